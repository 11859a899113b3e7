"""A small MCP server (the official Python SDK's server side) that keyward's
gateway protects in the interop tests: one tool, streamable HTTP, no auth of
its own. It reports who keyward said the caller is.

Usage: python mcp_demo_server.py HOST PORT PATH
"""

import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer(name="keyward-demo")


@server.tool()
def echo(text: str, ctx: Context) -> str:
    """Echo text back, with the subject keyward vouched for."""
    request = ctx.request_context.request
    subject = request.headers.get("x-keyward-subject", "?") if request is not None else "?"
    leaked = request is not None and "authorization" in request.headers
    return f"echo: {text} (subject {subject}, token passed through: {leaked})"


if __name__ == "__main__":
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvicorn.run(server.streamable_http_app(streamable_http_path=path), host=host, port=port, log_level="warning")
