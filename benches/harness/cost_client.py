"""Client for proxy-cost.sh: sends a real ClientHello (Chromium's) through the proxy, then reads
to the end. `bulk`: one connection, prints bytes and MB/s. `conns N P`: N connections, P at a
time, each expecting the origin's 100 bytes; prints how many succeeded."""
import asyncio
import socket
import sys
import time

mode, host, port, hello_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
hello = open(hello_path, "rb").read()

if mode == "bulk":
    c = socket.create_connection((host, port))
    c.sendall(hello)
    buf = bytearray(1 << 20)
    total, start = 0, time.time()
    while True:
        n = c.recv_into(buf)
        if not n:
            break
        total += n
    print(f"{total} bytes, {total / (time.time() - start) / 1e6:.0f} MB/s")
else:
    n, parallel = int(sys.argv[5]), int(sys.argv[6])
    ok = failed = 0

    async def worker(count):
        global ok, failed
        for _ in range(count):
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(hello)
                await writer.drain()
                got = 0
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    got += len(data)
                writer.close()
                ok, failed = (ok + 1, failed) if got == 100 else (ok, failed + 1)
            except OSError:
                failed += 1

    async def main():
        await asyncio.gather(*[worker(n // parallel) for _ in range(parallel)])

    asyncio.run(main())
    print(f"{ok} ok, {failed} failed")
