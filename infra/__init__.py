"""How Learnstream runs: local services, topic definitions, migrations, code generation."""
