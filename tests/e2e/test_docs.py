"""test_docs.py: the documentation covers what the engine has: every global
function (asked from the running engine) in docs/api.md and the REPL help,
every option and variable of --help in docs/cli.md and the man page, every
error kind the code raises in the errors table; the README starts with the
two commands; the man page renders without warnings."""
import glob
import os
import re
import shutil
import subprocess
import unittest

from harness import ROOT, main, run


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


class Docs(unittest.TestCase):
    def test_every_global_function_is_documented(self):
        r = run(["-e", "for _, m in ipairs{'flow', 'census', 'fivetran', 'dbt_cloud', 'http', 'json', 'log'} do\n"
                       "  for k, v in pairs(_G[m]) do if type(v) == 'function' then print(m .. '.' .. k) end end\n"
                       "end"])
        names = sorted(r.stdout.split())
        self.assertGreater(len(names), 25)
        api = read("docs", "api.md")
        r = run(["-e", "local h = require('engine.help').functions\n"
                       "for m, fns in pairs(h) do for k in pairs(fns) do print(m .. '.' .. k) end end"])
        in_help = set(r.stdout.split())
        for name in names:
            self.assertTrue("`%s(" % name in api or "`%s{" % name in api, "%s is not in docs/api.md" % name)
            self.assertIn(name, in_help, "%s has no line in lua/help.lua" % name)
        for method in ["h:wait()", "h:cancel()", "h:status()", "job:run{"]:
            self.assertIn(method, api)

    def test_every_option_and_variable_is_documented(self):
        helptext = run(["--help"]).stdout
        options = set(re.findall(r"^  (-[-\w=|]+|-)", helptext, re.M))
        variables = set(re.findall(r"^  ([A-Z_]{6,})", helptext, re.M))
        self.assertGreater(len(options), 8)
        self.assertGreater(len(variables), 6)
        cli, man = read("docs", "cli.md"), read("docs", "engine.1").replace("\\-", "-")
        for opt in options:
            bare = opt.split("=")[0]
            self.assertIn("`%s" % bare, cli, opt)
            self.assertIn(bare.replace("--", "-" + "-"), man, opt)
        for var in variables:
            self.assertIn("`%s`" % var, cli, var)
            self.assertIn(var, man, var)

    def test_every_error_kind_is_in_the_table(self):
        code = "".join(read(p) for p in glob.glob(os.path.join(ROOT, "lua", "*.lua")))
        code += "".join(read(p) for p in glob.glob(os.path.join(ROOT, "engine", "*.c")))
        kinds = set(re.findall(r'errors\.error\("(\w+)"', code))
        kinds |= set(re.findall(r'raise\("(\w+)"', code))
        kinds |= set(re.findall(r'error_push\([A-Za-z]+, "(\w+)"', code))
        kinds |= {"invalid_argument", "failed", "skipped", "canceled", "unknown_status", "threshold",
                  "auth", "not_found", "http"}
        table = read("docs", "api.md").split("## flow")[0]
        for kind in kinds:
            self.assertIn("`%s`" % kind, table, "error kind %s is not documented" % kind)

    def test_internals_names_every_source_file(self):
        internals = read("docs", "internals.md")
        files = glob.glob(os.path.join(ROOT, "engine", "*.[ch]")) + glob.glob(os.path.join(ROOT, "lua", "*.lua"))
        files += glob.glob(os.path.join(ROOT, "tools", "*.c"))
        self.assertGreater(len(files), 30)
        for path in files:
            name = os.path.relpath(path, ROOT)
            self.assertIn("`%s`" % name, internals, "%s is not in docs/internals.md" % name)
        for module in re.findall(r'"(engine\.c\.\w+)"', read("engine", "modules.c")):
            self.assertIn(module, internals)

    def test_readme_starts_with_the_two_commands(self):
        lines = read("README.md").splitlines()
        self.assertEqual(lines[0], "# engine")
        self.assertEqual(lines[2], "```sh")
        self.assertTrue(lines[3].startswith("./dev demo "))
        self.assertTrue(lines[4].startswith("./dev test "))
        self.assertEqual(lines[5], "```")
        for doc in ["docs/api.md", "docs/census.md", "docs/cli.md", "docs/repl.md", "docs/coming-from.md",
                    "docs/internals.md"]:
            self.assertIn(doc, read("README.md"))

    @unittest.skipUnless(shutil.which("groff"), "needs groff")
    def test_man_page_renders(self):
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(ROOT, "docs", "engine.1")],
                           capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr), (0, ""))


if __name__ == "__main__":
    main()
