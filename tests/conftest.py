pytest_plugins = ["tests.support.fixtures", "tests.support.pg_fixtures", "tests.support.mysql"]
