# SPDX-License-Identifier: GPL-2.0
"""The runner of tests/scripts/test_*.py: every test_* function of a
module, one "PASS name" or "FAIL name: reason" line each (tests/run
counts them), exit status 1 if any failed."""
import traceback


def run(namespace: dict, prefix: str) -> int:
    failed = 0
    for name, fn in sorted(namespace.items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                print("PASS %s_%s" % (prefix, name[5:]), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s_%s: %s" % (prefix, name[5:], traceback.format_exc()
                                          .strip().splitlines()[-1]), flush=True)
    return 1 if failed else 0
