"""Processor: frames -> silence-cut windows -> ASR + diarization -> transcript store.

(Exports are filled in as modules land; see the modules' docstrings.)
"""
