"""ptk.pipelines: the ``ptk`` command line and the orchestration behind each command."""
