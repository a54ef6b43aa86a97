// Empty the embed directory except the committed .gitkeep and .gitignore,
// so that a build never leaves an old build's assets behind.
import { readdirSync, rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const dist = join(dirname(fileURLToPath(import.meta.url)), '../../controller/webui/dist')
for (const n of readdirSync(dist)) {
  if (n !== '.gitkeep' && n !== '.gitignore') rmSync(join(dist, n), { recursive: true, force: true })
}
