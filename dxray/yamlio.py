"""YAML as dxray's config files read it: safe, and strict about keys written twice."""

from __future__ import annotations

import yaml


class StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects a key written twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
