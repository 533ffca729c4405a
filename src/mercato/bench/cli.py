import json
from typing import Annotated

import typer

bench_app = typer.Typer(help="Benchmarks that print one JSON object.", no_args_is_help=True)


@bench_app.callback()
def _keys_for_throwaway_databases(ctx: typer.Context) -> None:
    """Benchmarks load databases of their own: without configured keys, random ones serve
    for the run (nothing they encrypt outlives it)."""
    from mercato import instance_keys
    from mercato.settings import settings_in_force

    try:
        instance_keys.secret_key()
    except instance_keys.KeysMissing:
        ctx.with_resource(settings_in_force(**instance_keys.new_keys()))


@bench_app.command("routing")
def routing(
    locations: Annotated[int, typer.Option(min=2, help="Locations in the network")] = 200,
    variants: Annotated[int, typer.Option(min=1, help="Variants in the catalogue")] = 2000,
    orders: Annotated[int, typer.Option(min=1, help="Orders timed")] = 10_000,
    quality_orders: Annotated[
        int, typer.Option(min=0, help="Small instances compared with the exact optimum")
    ] = 200,
    quality_locations: Annotated[
        int, typer.Option(min=2, help="Candidate locations per small instance")
    ] = 25,
    seed: Annotated[int, typer.Option(help="Random seed")] = 42,
) -> None:
    """Order sourcing: orders per second, and cost against an exact optimiser."""
    from mercato.bench.routing import run_routing_benchmark

    result = run_routing_benchmark(
        locations=locations,
        variants=variants,
        orders=orders,
        quality_orders=quality_orders,
        quality_locations=quality_locations,
        seed=seed,
    )
    typer.echo(json.dumps(result))


@bench_app.command("flash-sale")
def flash_sale(
    buyers: Annotated[int, typer.Option(min=1, max=5000, help="Concurrent buyers")] = 500,
    stock: Annotated[int, typer.Option(min=1, help="Units for sale")] = 100,
    locations: Annotated[int, typer.Option(min=1, max=100, help="Locations holding them")] = 5,
    processes: Annotated[int, typer.Option(min=1, max=32, help="API processes")] = 2,
    database_url: Annotated[
        str | None, typer.Option(help="Default: a new SQLite file; PostgreSQL: postgresql://...")
    ] = None,
) -> None:
    """The flash-sale story through the HTTP API: sold must equal stock, never more."""
    from mercato.bench.flash_sale import run

    typer.echo(json.dumps(run(buyers, stock, locations, processes, database_url)))


@bench_app.command("availability")
def availability(
    variants: Annotated[int, typer.Option(min=5, help="Variants in the catalog")] = 100_000,
    locations: Annotated[int, typer.Option(min=1, help="Locations the channel sells from")] = 500,
    stocked: Annotated[int, typer.Option(min=1, help="Locations holding each variant")] = 10,
    samples: Annotated[int, typer.Option(min=10, help="5-line carts timed")] = 1000,
    database_url: Annotated[
        str | None, typer.Option(help="Default: a new SQLite file; PostgreSQL: postgresql://...")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 7,
) -> None:
    """Available-to-promise of a 5-line cart through a channel, in-process and over HTTP."""
    from mercato.bench.availability import run

    typer.echo(json.dumps(run(variants, locations, stocked, samples, database_url, seed)))


@bench_app.command("checkout")
def checkout(
    concurrency: Annotated[
        list[int] | None, typer.Option(help="Concurrency levels (repeat the option)")
    ] = None,
    flows: Annotated[int | None, typer.Option(min=1, help="Flows per level")] = None,
    processes: Annotated[int, typer.Option(min=1, max=32, help="API processes")] = 2,
    database_url: Annotated[
        str | None, typer.Option(help="Default: a new SQLite file; PostgreSQL: postgresql://...")
    ] = None,
    statements: Annotated[bool, typer.Option(help="List the checkout's SQL statements")] = False,
) -> None:
    """The full shopper flow over HTTP; orders/s and checkout latency per concurrency level."""
    from mercato.bench.checkout import run

    result = run(concurrency or [1, 8, 32], flows, processes, database_url)
    if not statements:
        result.pop("statements")
    typer.echo(json.dumps(result))


@bench_app.command("pages")
def pages(
    orders: Annotated[
        list[int] | None,
        typer.Option(help="Order counts to measure at (repeat the option); default 0 and 100000"),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Requests per page")] = 30,
    database_url: Annotated[
        str | None, typer.Option(help="Default: a new SQLite file; PostgreSQL: postgresql://...")
    ] = None,
) -> None:
    """Back office pages: server time (p50/p95, wall and CPU) per screen on the demo data,
    then with the demo's orders copied up to each order count."""
    from mercato.bench.pages import run

    typer.echo(json.dumps(run(orders or [0, 100_000], rounds, database_url)))
