#!/bin/sh
# fake_dbt.sh: prints what a short `dbt run` prints, for the demo and tests.
echo "Running with dbt=1.7.4"
echo "Found 3 models, 0 tests, 0 snapshots"
sleep 0.5
echo "1 of 3 OK created sql table model analytics.users ........ [OK in 0.21s]"
sleep 0.3
echo "2 of 3 OK created sql table model analytics.accounts ..... [OK in 0.18s]"
echo "3 of 3 OK created sql view model analytics.events ........ [OK in 0.05s]"
echo "Completed successfully"
