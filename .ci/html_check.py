#!/usr/bin/env python3
"""Loads thpsim's HTML reports in headless Chromium over the DevTools protocol (standard
library only: a minimal WebSocket client), checks the DOM for the plots and maps they must
contain, measures the load time, saves a full-page screenshot, and fails on any console
error, uncaught exception or network request (the reports must be self-contained).

usage: html_check.py CHROMIUM OUTDIR FILE.html:SELECTOR=MIN[,SELECTOR=MIN…] …
"""
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1400,1000", "--remote-debugging-port=0"]


class Ws:
    """Just enough of RFC 6455 for CDP: masked text frames out, (fragmented) frames in."""

    def __init__(self, url):
        assert url.startswith("ws://"), url
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.s = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.s.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"websocket handshake failed: {head!r}")
        self.next_id = 0
        self.events = []

    def _read(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise RuntimeError("websocket closed")
            b += chunk
        return b

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if b0 & 0x0F == 8:
                raise RuntimeError("websocket closed by the browser")
            msg += payload
            if b0 & 0x80:
                return json.loads(msg)

    def send(self, method, **params):
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        return self.next_id

    def call(self, method, **params):
        want = self.send(method, **params)
        while True:
            m = self.recv()
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name, timeout=60):
        end = time.time() + timeout
        for i, m in enumerate(self.events):
            if m.get("method") == name:
                return self.events.pop(i)
        while time.time() < end:
            m = self.recv()
            self.events.append(m)
            if m.get("method") == name:
                return self.events.pop()
        raise RuntimeError(f"timed out waiting for {name}")


def main():
    chromium, outdir, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(outdir, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="thpsim-chromium-")
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    failures = []
    try:
        url = None
        end = time.time() + 60
        while time.time() < end and url is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            if "DevTools listening on " in line:
                url = line.split("DevTools listening on ", 1)[1].strip()
        if url is None:
            raise RuntimeError("chromium did not start its DevTools endpoint")
        port = url.split(":")[2].split("/")[0]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        target = json.loads(urllib.request.urlopen(req, timeout=30).read())
        ws = Ws(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            ws.call(f"{domain}.enable")
        for spec in specs:
            path, _, checks = spec.partition(":")
            file_url = "file://" + os.path.abspath(path)
            ws.events.clear()
            t0 = time.time()
            ws.call("Page.navigate", url=file_url)
            ws.wait_event("Page.loadEventFired", timeout=120)
            load_s = time.time() - t0
            errors = []
            for m in ws.events:
                meth, p = m.get("method"), m.get("params", {})
                if meth == "Runtime.exceptionThrown":
                    errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
                elif meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    errors.append("console.error: " + json.dumps(p.get("args", []))[:300])
                elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    errors.append("log: " + p["entry"].get("text", "")[:300])
                elif meth == "Network.requestWillBeSent":
                    u = p.get("request", {}).get("url", "")
                    if not u.startswith("file://") and not u.startswith("data:"):
                        errors.append(f"network request: {u}")
            counts = {}
            for check in filter(None, checks.split(",")):
                sel, _, least = check.rpartition("=")
                r = ws.call("Runtime.evaluate", expression=f"document.querySelectorAll({json.dumps(sel)}).length",
                            returnByValue=True)
                n = r["result"]["value"]
                counts[sel] = n
                if n < int(least):
                    errors.append(f"DOM: {n} × `{sel}`, expected at least {least}")
            shot = ws.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            png = os.path.join(outdir, os.path.basename(path).rsplit(".", 1)[0] + ".png")
            with open(png, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            size = os.path.getsize(path)
            status = "ok" if not errors else "FAIL"
            print(f"{status} {path}: {size / 1024:.0f} KiB, loaded in {load_s:.2f}s; "
                  + ", ".join(f"{n}×{s}" for s, n in counts.items()) + f"; screenshot {png}")
            for e in errors:
                print(f"    {e}")
            failures += [f"{path}: {e}" for e in errors]
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
