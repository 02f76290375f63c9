/**
 * Real outages a test can switch on and off while a plugin runtime keeps running:
 *
 * - `immutable(paths)`: `chattr +i` on the SQLite file, its `-wal` and its directory — the
 *   root-proof read-only database (writes through the open descriptors fail with EPERM,
 *   reported as SQLITE_IOERR_WRITE at COMMIT; reads keep working). Never on the `-shm`: it
 *   is mmap'ed, and a store into an immutable mapping is a SIGBUS. Needs CAP_LINUX_IMMUTABLE
 *   (`chattrWorks` says whether this machine has it).
 * - `tcpProxy(url)`: a local TCP proxy in front of a PostgreSQL server, so the server's port
 *   can "refuse connections" (proxy closed, every proxied connection cut) and come back on the
 *   same port.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"

/** Whether `chattr +i` works here (root with CAP_LINUX_IMMUTABLE, on a filesystem that supports it). */
export const chattrWorks: boolean = (() => {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), "channel-state-chattr-probe-"))
  try {
    execFileSync("chattr", ["+i", probe], { stdio: "ignore" })
    execFileSync("chattr", ["-i", probe], { stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    fs.rmSync(probe, { recursive: true, force: true })
  }
})()

/** Makes the SQLite database at `file` immutable (directory, file, `-wal`) until `lift` or the end of the scope. */
export const immutable = (file: string): Effect.Effect<{ readonly lift: Effect.Effect<void> }, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const paths = [path.dirname(file), file, `${file}-wal`].filter((p) => fs.existsSync(p))
        execFileSync("chattr", ["+i", ...paths])
        let lifted = false
        return () => {
          if (lifted) return
          lifted = true
          execFileSync("chattr", ["-i", ...paths])
        }
      }),
      (lift) => Effect.sync(lift)
    ),
    (lift) => ({ lift: Effect.sync(lift) })
  )

/** A TCP proxy to the server of a PostgreSQL URL; `url` is the same URL through the proxy. */
export interface TcpProxy {
  readonly url: string
  /** Stops listening and cuts every proxied connection: the port refuses connections. */
  readonly down: Effect.Effect<void>
  /** Listens again, on the same port. */
  readonly up: Effect.Effect<void>
}

/** Starts a proxy (up) in front of `url`'s server; closed with the scope. */
export const tcpProxy = (url: string): Effect.Effect<TcpProxy, never, Scope.Scope> =>
  Effect.gen(function* () {
    const target = new URL(url)
    const sockets = new Set<net.Socket>()
    const track = (socket: net.Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    }
    const server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname)
      track(client)
      track(upstream)
      client.pipe(upstream).pipe(client)
      client.on("error", () => upstream.destroy())
      upstream.on("error", () => client.destroy())
    })
    const listen = (port: number) =>
      Effect.async<number>((resume) => {
        server.listen(port, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
      })
    const close = Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      if (!server.listening) return resume(Effect.void)
      server.close(() => resume(Effect.void))
    })
    const port = yield* Effect.acquireRelease(listen(0), () => close)
    const proxied = new URL(url)
    proxied.host = `127.0.0.1:${port}`
    return { url: proxied.toString(), down: close, up: Effect.asVoid(listen(port)) }
  })
