"""SpecError: a bad graph spec, reported with the file, the field path and the fix."""


class SpecError(ValueError):
    def __init__(self, message: str, *, file: str = "<spec>", field: str = "", fix: str = ""):
        self.file, self.field, self.reason, self.fix = file, field, message, fix
        where = f"{file}: {field}: " if field else f"{file}: "
        super().__init__(where + message + (f" (fix: {fix})" if fix else ""))
