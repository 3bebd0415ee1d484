"""``rlm.utils`` of the paper authors' library: only its ``exceptions`` module is mirrored
(the rest are its internals: parsing, prompts, token counting)."""
