"""Origin for proxy-cost.sh: after the first flight (the replayed ClientHello) it either sends a
file with sendfile(2) (bulk) or 100 bytes (small), then closes. Cheap on purpose, so the proxy's
own CPU is what the measurement sees."""
import asyncio
import socket
import sys
import threading

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

if mode == "bulk":
    path = sys.argv[4]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)

    def serve(conn):
        conn.recv(65536)
        with open(path, "rb") as f:
            conn.sendfile(f)
        conn.close()

    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
else:
    async def handle(reader, writer):
        await reader.read(65536)
        writer.write(b"x" * 100)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, host, port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())
