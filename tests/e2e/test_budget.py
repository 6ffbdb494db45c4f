"""test_budget.py: one request budget per account (issue 20): every request
to one account shares PREFIX_MAX_REQUESTS_PER_SECOND, a 429's Retry-After
pauses every request of the account, and the summary says when the budget
held requests back."""
import json
import os

from harness import SimTestCase, main, run

SYNCS = """
local n = tonumber(arg[1])
local fns = {}
for i = 1, n do fns[i] = function() return census.sync({sync_id = i}) end end
flow.parallel(fns)
print("done")
"""


class Budget(SimTestCase):
    SIM_ENV = dict(SimTestCase.SIM_ENV, CENSUS_POLL="0.05")

    def syncs(self, n, env, steps=("working", "completed")):
        for i in range(1, n + 1):
            self.sim.syncs[i] = {"steps": list(steps)}
        summary = os.path.join(self.dir, "summary.json")
        r = run(["--summary-json", summary, self.flow(SYNCS), str(n)], env=self.sim_env(env), timeout=120)
        with open(summary) as f:
            return r, json.load(f)

    def test_every_request_of_the_account_shares_the_budget(self):
        r, doc = self.syncs(60, {"CENSUS_MAX_REQUESTS_PER_SECOND": "40"})
        self.assertEqual(r.rc, 0, r)
        # the engine spaces its requests 1/40 s apart (and 5 % more); where
        # the simulator's threads see them is jittered by its own scheduling,
        # so: the whole run took at least what the budget allows, and no one
        # second saw more than a quarter above it
        times = sorted(self.sim.requests_by_token[self.token])
        self.assertGreaterEqual(times[-1] - times[0], (len(times) - 1) / 40 * 0.97)
        self.assertLessEqual(self.sim.max_per_second(self.token), 50)
        self.assertEqual(sum(self.sim.triggers.values()), 60)
        self.assertRegex(r.stderr, r"\n  census: the request budget \(40 a second, CENSUS_MAX_REQUESTS_PER_SECOND\) "
                                   r"held back \d+ requests, up to [\d.]+ s each\n")
        budget = doc["request_budget"]
        self.assertEqual((budget[0]["provider"], budget[0]["rate"]), ("census", 40))
        self.assertGreater(budget[0]["held"], 0)

    def test_a_429_pauses_every_request_of_the_account(self):
        self.sim.storm = {"count": 4, "retry_after": 1}
        r, doc = self.syncs(40, {"CENSUS_MAX_REQUESTS_PER_SECOND": "40"})
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.sim.throttled[self.token], 4)
        # once the engine heard the first 429, nothing was sent before its end
        self.assertLessEqual(self.sim.during_pause.get(self.token, 0), 1)
        self.assertEqual(sum(self.sim.triggers.values()), 40)
        self.assertIn("Census answered 429 4 times, pausing every request to the account", r.stderr)
        self.assertEqual(doc["request_budget"][0]["throttled"], 4)

    def test_no_budget_line_when_nothing_was_held(self):
        r, doc = self.syncs(3, {})
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("request budget", r.stderr)
        self.assertNotIn("request_budget", doc)

    def test_a_bad_budget_is_refused_with_one_line(self):
        r = run(["-e", "census.sync({sync_id = 1})"], env=self.sim_env({"CENSUS_MAX_REQUESTS_PER_SECOND": "fast"}))
        self.assertEqual(r.rc, 1, r)
        self.assertIn('CENSUS_MAX_REQUESTS_PER_SECOND must be a number of requests a second (0: no budget), '
                      'got "fast"', r.stderr)


if __name__ == "__main__":
    main()
