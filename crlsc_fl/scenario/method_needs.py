"""Does a scenario supply what its ``train.kb-method`` needs? (:mod:`crlsc_fl.methods.needs`)

The method class declares its inputs; this module knows which scenario keys supply each
one, so that a scenario whose method cannot be given what it needs, or that sends peers'
anchor keys to a method that does not use them, fails before any work, with an error that
names the key, its value and what is allowed. No method is named here: the messages are
made from the declarations.
"""

from __future__ import annotations

from crlsc_fl.kb.mentor import MentorConfig
from crlsc_fl.methods import METHODS, Need, methods_using
from crlsc_fl.scenario.topology_config import TopologyConfig
from crlsc_fl.validation import ConfigError

# what the scenario must set to supply each input (the SKB and [fusion] are always there)
HOW_TO_SUPPLY = {
    Need.KB: "a knowledge base: the SKB of [kb]",
    Need.ANCHORS: "anchors to ground the devices: set kb.anchors > 0",
    Need.FUSION: "fusion settings: the [fusion] table",
    Need.PEER_KEYS: "peers' anchor-keyed PKBs: set topology.peer-knowledge='anchor-pkb' or 'random-anchor-pkb'",
}


def supplied(kb: MentorConfig, topology: TopologyConfig) -> frozenset[Need]:
    """The inputs the scenario's devices can be given: the SKB and the fusion settings
    always, anchors when the mentor selects some, peers' anchor keys when the peers'
    knowledge is anchor-keyed."""
    given = {Need.KB, Need.FUSION}
    if kb.anchors:
        given.add(Need.ANCHORS)
    if topology.peer_knowledge != "pkb":
        given.add(Need.PEER_KEYS)
    return frozenset(given)


def check_method_needs(kb_method: str, kb: MentorConfig, topology: TopologyConfig) -> None:
    """Refuse a ``train.kb-method`` that needs an input the scenario does not supply, and
    anchor-keyed peer knowledge for a method that does not take peers' keys."""
    method = METHODS.get(kb_method)
    given = supplied(kb, topology)
    for need in Need:
        if need in method.needs and need not in given:
            raise ConfigError(f"train.kb-method={kb_method!r} needs {HOW_TO_SUPPLY[need]}")
    if Need.PEER_KEYS in given and Need.PEER_KEYS not in method.uses():
        takers = " or ".join(repr(name) for name in methods_using(Need.PEER_KEYS) if Need.KB in METHODS.get(name).uses())
        raise ConfigError(
            f"topology.peer-knowledge={topology.peer_knowledge!r} keys peers' knowledge by the anchors: "
            f"it needs train.kb-method={takers} (got {kb_method!r}), or use 'pkb'"
        )
