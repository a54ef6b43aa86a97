// The API types are generated from the controller's OpenAPI document; a
// change to openapi.json without `npm run gen:api` fails here.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, test } from 'vitest'

test('src/api/schema.d.ts matches controller/api/openapi.json', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'bf-schema-')), 'schema.d.ts')
  execFileSync(
    process.execPath,
    ['node_modules/openapi-typescript/bin/cli.js', '../controller/api/openapi.json', '-o', out],
    { stdio: 'pipe' },
  )
  const fresh = readFileSync(out, 'utf8')
  const committed = readFileSync('src/api/schema.d.ts', 'utf8')
  expect(committed === fresh, 'src/api/schema.d.ts is stale: run `npm run gen:api` in web/').toBe(true)
}, 30000)
