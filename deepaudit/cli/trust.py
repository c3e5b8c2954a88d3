"""``deepaudit trust-list show|update``: the C2PA trust lists that decide ``trusted``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepaudit.cli.console import JsonOpt, errors_to_exit, print_json, stdout

__all__ = ["app"]

app = typer.Typer(
    help="The official C2PA Trust List and TSA Trust List that deepaudit uses by default.\n\n"
    "A valid C2PA signature is 'trusted' when its signer chains to the C2PA Trust List (or "
    "to your --trust-anchors). A snapshot of the lists, published by the C2PA Conformance "
    "Program under CC BY 4.0, ships with deepaudit; `show` prints each list's issue date, "
    "certificates and expiry horizon, `update` installs a newer local snapshot. Nothing is "
    "fetched at run time; --no-default-trust on provenance and scan turns the lists off.",
    no_args_is_help=True,
)


@app.command("show")
def show(as_json: JsonOpt = False) -> None:
    """Each list in force: its name, issue date, next update, certificate count, the first
    and last of its certificates to expire, its checksum and where it is installed."""
    from deepaudit.trust_lists import load_trust_lists

    with errors_to_exit():
        lists = [t.to_json() for t in load_trust_lists()]
    if as_json:
        print_json(lists)
        return
    out = stdout()
    for t in lists:
        out.print(
            f"{t['name']} ({t['kind']}, {t['location']}): issued {t['issued'] or '?'}, next "
            f"update {t['next_update'] or '?'}, {t['certificates']} certificates expiring "
            f"{t['earliest_expiry'] or '?'} .. {t['latest_expiry'] or '?'}\n"
            f"  {t['file']}  sha256 {t['sha256']}",
            markup=False,
        )


@app.command("update")
def update(
    source: Annotated[
        Path,
        typer.Argument(
            help="A folder with C2PA-TRUST-LIST.pem (and .json; the TSA list likewise) "
            "as the C2PA Conformance Program publishes them, or one such .pem file.",
            exists=True,
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Install a newer local snapshot of the lists for this user, after checking that every
    file parses; the lists shipped with deepaudit stay as they are."""
    from deepaudit.trust_lists import install_trust_lists

    with errors_to_exit():
        lists = [t.to_json() for t in install_trust_lists(source)]
    if as_json:
        print_json(lists)
        return
    for t in lists:
        stdout().print(
            f"installed {t['name']}: issued {t['issued'] or '?'}, {t['certificates']} "
            f"certificates -> {t['file']}",
            markup=False,
        )
