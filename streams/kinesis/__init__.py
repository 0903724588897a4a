"""The Kinesis Data Streams backend: its writer and its consumer.

- :mod:`streams.kinesis.writer`: :class:`~streams.kinesis.writer.KinesisWriter`,
  the :class:`streams.base.StreamWriter` over ``PutRecords`` (needs boto3 only).
- :mod:`streams.kinesis.daemon`: :class:`~streams.kinesis.daemon.KclDaemon`, the
  :class:`streams.base.StreamConsumer` that runs the KCL MultiLangDaemon (java).
- :mod:`streams.kinesis.child`: the process the daemon starts per shard lease
  (``python -m streams.kinesis.child module:callable``); it adapts kclpy's v3
  record processor to :class:`streams.base.RecordProcessor`.

Import the modules themselves: the consumer side needs ``kclpy-ext`` (the
``aws`` extra), which a producer image does not install.
"""
