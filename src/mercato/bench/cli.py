import typer

bench_app = typer.Typer(help="Benchmarks that print one JSON object.", no_args_is_help=True)
