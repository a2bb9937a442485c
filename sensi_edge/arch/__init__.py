"""Per-family adapters: the only place that knows module names. Everything else asks an adapter."""
from .bert import BertAdapter

_ADAPTERS = {"bert": BertAdapter}  # trimmed BERTs are model_type bert too (modeling/configuration_sensi_bert.py)


def adapter_for(model_or_config):
    config = getattr(model_or_config, "config", model_or_config)
    from ..errors import SensiEdgeError

    try:
        return _ADAPTERS[config.model_type]
    except KeyError:
        raise SensiEdgeError(
            f"model type {config.model_type!r} is not supported yet (supported: {', '.join(sorted(_ADAPTERS))}); "
            "pass a BERT checkpoint"
        ) from None


__all__ = ["adapter_for", "BertAdapter"]
