"""Drop-in classes for code written against the seed RLM libraries.

``rlm_engine.compat.rlm`` mirrors the import paths of the paper authors' library
(``from rlm import RLM`` -> ``from rlm_engine.compat.rlm import RLM``; ``rlm.logger``,
``rlm.rlm_repl``), so moving a program over means changing its import lines only. Every
class here is a thin translation onto :class:`rlm_engine.RLM` and its
:class:`~rlm_engine.config.RLMConfig`: there is no second loop. A keyword with no
equivalent here raises an error that says what to use instead; none is ignored.
"""
