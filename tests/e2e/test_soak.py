"""test_soak.py: a short soak (tests/soak.py): 1,000 syncs against a
simulator injecting random faults end as scripted, none gets two runs, and
RSS and descriptors stay flat. ./dev soak runs it long."""
import io
import os
import sys
import unittest

from harness import ENGINE, ROOT, keep_output, main

sys.path.insert(0, os.path.join(ROOT, "tests"))
import soak  # noqa: E402


class Soak(unittest.TestCase):
    def test_a_short_soak(self):
        asan = ENGINE.endswith("-asan")
        out = io.StringIO()
        problems, stderr = soak.soak(15 if asan else 20, ENGINE, out, check_rss=not asan)
        keep_output(stderr)
        print(out.getvalue(), end="")
        self.assertEqual(problems, [], out.getvalue())
        self.assertIn("faults injected", out.getvalue())


if __name__ == "__main__":
    main()
