"""The decision wire format, in one place: how a decision, a joined decision and a
slot's example are laid out as bytes, written and cut apart.

A server writes a decision with ``c`` (context and ``_multi`` offers) as its last key
and the byte offset of ``,"c":`` in the message header ``c_at``
(:func:`encode_decision`, or the server's fast :func:`encode_decision_event`). A learner
decodes only the small head before ``c`` (:func:`split_head`), splices the CB label in
front of the body's bytes (:func:`joined_line`, :func:`learn_line`) and VW's adapter cuts
such a line into label, context and offers without decoding it (:func:`split_joined`).
A multi-slot decision's slots after the first are learned from :func:`slot_example`,
built by the server's own slot rule (:mod:`bandit.core.slots`).

Every fast form has a plain twin that builds the dict and encodes it whole, and a
property test (``tests/test_codec.py``) checks the two agree byte for byte.
"""

from bandit.core.codec.decision import (
    C_AT,
    decision_event,
    encode_decision,
    encode_decision_event,
    encode_decision_plain,
    split_head,
    split_head_plain,
    utc_now,
)
from bandit.core.codec.joined import (
    LABEL_KEYS,
    JoinedParts,
    cb_label,
    ccb_joined_event,
    joined_event,
    joined_head,
    joined_line,
    joined_tail,
    label_end,
    learn_event,
    learn_line,
    open_label,
    split_joined,
    split_joined_plain,
)
from bandit.core.codec.slots import slot_example, slot_lines

__all__ = [
    "C_AT", "LABEL_KEYS", "JoinedParts", "cb_label", "ccb_joined_event", "decision_event",
    "encode_decision", "encode_decision_event", "encode_decision_plain", "joined_event",
    "joined_head", "joined_line", "joined_tail", "label_end", "learn_event", "learn_line",
    "open_label",
    "slot_example", "slot_lines", "split_head", "split_head_plain", "split_joined",
    "split_joined_plain", "utc_now",
]
