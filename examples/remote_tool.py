"""A remote tool written in Python (standard library only).

The sandbox service calls it over HTTP for every tool call: it POSTs the call as JSON
({"name", "args", "kwargs", "session_id", "run_id"}) and expects the tool's value as JSON
back; an error is a non-2xx answer with {"error": {"code", "message"}}.

Run it, then register it with the service's admin token:

    python3 examples/remote_tool.py 9090 &
    curl -s http://127.0.0.1:8787/v1/capabilities \\
      -H "authorization: Bearer $SANDBOX_ADMIN_TOKEN" -H 'content-type: application/json' -d '{
        "name": "word_count", "description": "Counts the words of a text.",
        "input_schema": {"type": "array", "prefixItems": [{"title": "text", "type": "string"}], "minItems": 1, "maxItems": 1},
        "output_schema": {"type": "integer"},
        "endpoint": {"url": "http://127.0.0.1:9090/"}}'

Guest code then calls `await word_count("a b c")`.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class ToolHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        call = json.loads(self.rfile.read(length) or b"{}")
        if call.get("name") != "word_count":
            return self.answer(404, {"error": {"code": "UNKNOWN_TOOL", "message": "This endpoint serves word_count."}})
        text = call["args"][0]
        if not text.strip():
            return self.answer(422, {"error": {"code": "EMPTY_TEXT", "message": "There are no words to count."}})
        return self.answer(200, len(text.split()))

    def answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9090
    server = HTTPServer(("127.0.0.1", port), ToolHandler)
    print(f"word_count tool listening on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
