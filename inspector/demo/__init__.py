"""The bundled demo: ``demo.jsonl`` (12 conversations, each showing one loss-mask case; README.md lists them) and the
chat templates the offline default tokenizer and the default loss model are used with. Data only, no code: the app
opens on it, the CLI's examples and the tests use it.
"""
