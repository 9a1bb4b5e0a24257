"""The Rules language: parse, type-check and compile Cloudflare-style expressions. Pure Python,
no I/O; the edge, the API and the CLI all compile through `compile_expression`."""

from mtlsgate.rules.compiler import CompiledExpression, compile_expression
from mtlsgate.rules.errors import RulesError
from mtlsgate.rules.parser import MAX_DEPTH, MAX_LENGTH

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "CompiledExpression", "RulesError", "compile_expression"]
