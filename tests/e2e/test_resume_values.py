"""test_resume_values.py: under --resume, a step that completed in the
resumed run hands back exactly what it returned (integers exact, floats to
the bit, math.type kept, nil inside tables kept, strings byte for byte);
what cannot be recorded exactly makes the step run again, with a WARN."""
import os
import shutil
import sqlite3
import tempfile
import unittest

from harness import main, run, write_flow

# The step prints "ran" when it runs; then the flow prints what it got, and
# a later step fails when FAIL_AFTER is set.
VALUES_FLOW = r"""
local r = table.pack(flow.step("values", function()
  print("ran")
  return 123456789012345, 0.1 + 0.2, 9007199254740993, {nested = {1, nil, 3}},
    math.maxinteger, math.mininteger, -0.0, 3.0, 5e-324, "a\0b\255", nil, {[-1] = "x", k = false}
end))

local function show(v)
  if math.type(v) == "integer" then return string.format("integer %d", v) end
  if math.type(v) == "float" then return string.format("float %.17g", v) end
  if type(v) == "string" then
    return "string " .. v:gsub("[^%w ]", function(c) return string.format("\\%d", c:byte()) end)
  end
  if type(v) ~= "table" then return type(v) .. " " .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) ~= type(b) then return type(a) < type(b) end
    return a < b
  end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = "[" .. show(k) .. "] = " .. show(v[k]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

print("n", r.n)
for i = 1, r.n do print(i, show(r[i])) end
local nested = r[4].nested
print("nested[2]", type(nested[2]), show(nested[2]))
print("1/r[7]", 1 / r[7])
flow.step("after", function() if os.getenv("FAIL_AFTER") then error("step failed") end end)
"""

UNRECORDABLE_FLOW = r"""
local f = flow.step("unrecordable", function()
  print("ran")
  return %s
end)
flow.step("after", function() if os.getenv("FAIL_AFTER") then error("step failed") end end)
"""


class ResumeValues(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.state = os.path.join(self.dir, "state")
        self.env = {"ENGINE_STATE_DIR": self.state, "FAIL_AFTER": None}

    def engine(self, args, **env):
        return run(args, env=dict(self.env, **env))

    def test_a_skipped_step_returns_exactly_what_it_returned(self):
        flow = write_flow(VALUES_FLOW, self.dir)
        failed = self.engine([flow], FAIL_AFTER="1")
        self.assertEqual(failed.rc, 1, failed)
        self.assertTrue(failed.stdout.startswith("ran\n"), failed)
        fresh = failed.stdout[len("ran\n"):]
        self.assertIn("1\tinteger 123456789012345\n", fresh)
        self.assertIn("2\tfloat 0.30000000000000004\n", fresh)
        self.assertIn("3\tinteger 9007199254740993\n", fresh)
        self.assertIn("nested[2]\tnil\tnil nil\n", fresh)

        resumed = self.engine(["--resume", flow])
        self.assertEqual(resumed.rc, 0, resumed)
        self.assertIn("step values: done in engine run 1; not run again (--resume)", resumed.stderr)
        self.assertNotIn("ran\n", resumed.stdout, "the step is not run again")
        self.assertEqual(resumed.stdout, fresh)

        # the journal column stays JSON a person can read
        with sqlite3.connect(os.path.join(self.state, "journal.db")) as db:
            (text,) = db.execute("SELECT results FROM steps WHERE name = 'values'").fetchone()
        self.assertTrue(text.startswith('{"n":12,"v":[123456789012345,0.30000000000000004,'
                                        '9007199254740993,{"nested":[1,null,3]},'), text)

    def test_what_cannot_be_recorded_runs_again_with_a_warning(self):
        for value in ["print", "math.huge", "0/0", "setmetatable({}, {})", "{[1.5] = 1}",
                      "coroutine.create(print)", "(function() local t = {} t.t = t return t end)()"]:
            with self.subTest(value=value):
                shutil.rmtree(self.state, True)
                flow = write_flow(UNRECORDABLE_FLOW % value, self.dir)
                failed = self.engine([flow], FAIL_AFTER="1")
                self.assertEqual(failed.rc, 1, failed)
                self.assertEqual(failed.stdout, "ran\n")
                with sqlite3.connect(os.path.join(self.state, "journal.db")) as db:
                    rows = db.execute("SELECT status, results FROM steps WHERE name = 'unrecordable'").fetchall()
                self.assertEqual(rows, [("ok", None)])
                resumed = self.engine(["--resume", flow])
                self.assertEqual(resumed.rc, 0, resumed)
                self.assertEqual(resumed.stdout, "ran\n", "the step runs again")
                self.assertIn("could not be recorded", resumed.stderr)
                self.assertIn("running it again", resumed.stderr)


if __name__ == "__main__":
    main()
