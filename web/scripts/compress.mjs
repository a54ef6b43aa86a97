// After `vite build`: gzip every text asset in place (the .gz replaces the
// original; the Go server inflates it for the rare client without gzip),
// and print the gzipped size of what the first page load needs, so that
// the bundle budget (300 KB) is checked on every build.
import { readFileSync, writeFileSync, readdirSync, statSync, unlinkSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const dist = join(dirname(fileURLToPath(import.meta.url)), '../../controller/webui/dist')
const budget = 300 * 1024

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? walk(p) : [p]
  })
}

// What index.html loads before any route's chunk: its module script, the
// chunks it preloads, and its style sheets.
const index = readFileSync(join(dist, 'index.html'), 'utf8')
const initial = [...index.matchAll(/(?:src|href)="(?:\.\/)?(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1])
let initialGz = 0
for (const f of walk(dist)) {
  if (!/\.(js|css|svg|json|txt|map)$/.test(f)) continue
  const gz = gzipSync(readFileSync(f), { level: 9 })
  if (initial.some((a) => f.endsWith(a))) initialGz += gz.length
  writeFileSync(f + '.gz', gz)
  unlinkSync(f)
}
console.log(`initial JavaScript and CSS: ${initial.length} files, ${(initialGz / 1024).toFixed(1)} KB gzipped (budget ${budget / 1024} KB)`)
if (initialGz > budget) {
  console.error('over the initial-load budget')
  process.exit(1)
}
