"""Split information: a generated task family where collaboration is needed.

Each problem has a private fact (Problem.context) that only the sender's role shows
({context}) and a question (Problem.question) that only the receiver sees and that
cannot be answered without the fact. Running it with no message, text, kv, kv with
latent_only, and soft tokens measures what each channel really carries. Facts are drawn
with a seeded RNG from five kinds: a code, a name, a count, a place, and a small table
(one entry asked). Golds are numbers (numeric checker) or names/places (contains).

  split-info        200 problems from seed 0
  split-info:SEED   another seed
"""
from __future__ import annotations

import random

from latentray.runtime.eval.problem import DataError, Problem

SIZE = 200
NAMES = ["Priya", "Tomas", "Ingrid", "Kwame", "Yuki", "Mateo", "Anika", "Dmitri", "Leila", "Oskar",
         "Farah", "Jonas", "Mei", "Rafael", "Sana", "Viktor", "Zara", "Emeka", "Hana", "Lucas"]
PLACES = ["Lisbon", "Nairobi", "Oslo", "Lima", "Hanoi", "Quito", "Dublin", "Perth", "Tunis", "Riga",
          "Seoul", "Bogota", "Cairo", "Vienna", "Manila", "Denver", "Krakow", "Accra", "Porto", "Osaka"]
ROLES = ["manager", "pilot", "doctor", "captain", "librarian", "engineer", "coach", "chef"]
ITEMS = ["boxes", "chairs", "lamps", "books", "bottles", "crates", "tyres", "plates"]
EVENTS = ["meeting", "concert", "wedding", "conference", "match", "workshop"]


def _code(rng):
    code = rng.randint(1000, 9999)
    return f"The door code is {code}.", "What is the door code? Answer with the number.", str(code), "math", None


def _name(rng):
    role, name = rng.choice(ROLES), rng.choice(NAMES)
    return (f"The new {role} is called {name}.", f"What is the new {role} called? Answer with the name.",
            name, "exact", "contains")


def _count(rng):
    item, n = rng.choice(ITEMS), rng.randint(11, 999)
    return (f"The storeroom holds {n} {item}.", f"How many {item} does the storeroom hold? Answer with the number.",
            str(n), "math", None)


def _place(rng):
    event, place = rng.choice(EVENTS), rng.choice(PLACES)
    return (f"The {event} will take place in {place}.", f"In which city will the {event} take place? "
            "Answer with the city.", place, "exact", "contains")


def _table(rng):
    people = rng.sample(NAMES, 3)
    scores = rng.sample(range(2, 99), 3)
    asked = rng.randrange(3)
    table = ", ".join(f"{p} {s}" for p, s in zip(people, scores))
    return (f"Scores: {table}.", f"What is {people[asked]}'s score? Answer with the number.",
            str(scores[asked]), "math", None)


KINDS = [_code, _name, _count, _place, _table]


def generate(seed: int = 0, size: int = SIZE) -> list:
    rng = random.Random(seed)
    problems = []
    for i in range(size):
        kind = KINDS[i % len(KINDS)]
        context, question, gold, task, checker = kind(rng)
        meta = {"kind": kind.__name__.lstrip("_"), **({"checker": checker} if checker else {})}
        problems.append(Problem(id=f"split-{seed}-{i}", question=question, gold=gold, task=task,
                                context=context, meta=meta))
    return problems


def load_split_info(split=None, seed: str | None = None) -> list:
    if split is not None:
        raise DataError("split-info is generated; it has no splits (give a seed as split-info:SEED)")
    try:
        value = int(seed) if seed else 0
    except ValueError:
        raise DataError(f"split-info:{seed}: the seed must be an integer, e.g. split-info:3") from None
    return generate(value)
