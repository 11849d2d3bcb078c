"""One module per `latentray` command, each with add_parser(sub) and run(args).

runtime/cli.py lists them; spec loading and the options every command shares live in
runtime/commands/spec_options.py.
"""
