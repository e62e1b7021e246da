"""Prints the requirements of kfp-ct and the given extras, one a line, read from setup.cfg (stdlib only).

The images install these in a layer of their own, before the catalog's code, so that a code change does not
reinstall every dependency.

usage: python requirements.py SETUP_CFG [EXTRA,EXTRA,...]
"""

import configparser
import sys


def requirements(setup_cfg: str, extras: list[str]) -> list[str]:
    config = configparser.ConfigParser()
    if not config.read(setup_cfg):
        raise SystemExit(f"cannot read {setup_cfg}")
    lines = config["options"]["install_requires"].splitlines()
    known = config["options.extras_require"]
    for extra in extras:
        if extra not in known:
            raise SystemExit(f"unknown extra '{extra}': setup.cfg has {', '.join(known)}")
        lines += known[extra].splitlines()
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.rsplit("usage: ", 1)[1])
    extras = [e.strip() for e in (sys.argv[2] if len(sys.argv) == 3 else "").split(",") if e.strip()]
    print("\n".join(requirements(sys.argv[1], extras)))
