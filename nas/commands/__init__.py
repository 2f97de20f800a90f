"""``xnas`` subcommands that live in their own module (see ``nas.cli.COMMAND_MODULES``)."""
