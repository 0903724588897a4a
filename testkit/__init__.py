"""Helpers shared by the tests and the benches: generated and real speech, live services, measurement.

``tests/`` and ``bench/`` both import this package and never each other
(tests/test_layers.py checks). Nothing in the production packages imports it.

- :mod:`testkit.speech`: flite test voices and the planning meeting.
- :mod:`testkit.corpus`, :mod:`testkit.evaluate`: the real-speech development set and its scoring.
- :mod:`testkit.transcripts`: the planning meeting as transcript segments (notes).
- :mod:`testkit.sse`: a reader of a session's live feed (server-sent events).
- :mod:`testkit.service`: ``flowbot serve`` in-process, and starting a session through its API.
- :mod:`testkit.captions`: caption latency of replayed sessions, and when a level holds.
- :mod:`testkit.net`: :func:`~testkit.net.free_port`, :func:`~testkit.net.wait_for`.
- :mod:`testkit.stats`: the one :func:`~testkit.stats.percentile` behind every published p50/p95.
- :mod:`testkit.gpu`, :mod:`testkit.kcl_factories`, :mod:`testkit.converse_emulator`,
  :mod:`testkit.llama_server`, :mod:`testkit.supabase_stack`, :mod:`testkit.emulators`: GPU
  sampling, KCL child factories, a Bedrock Converse emulator, llama-cpp-python's server, a
  Supabase-shaped stack, LocalStack + moto for a run.
"""
