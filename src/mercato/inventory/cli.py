import typer

inventory_app = typer.Typer(help="Stock ledger tools.", no_args_is_help=True)
