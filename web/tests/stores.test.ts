import { beforeEach, describe, expect, test, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { dirOf, pickLocale, usePrefs } from '../src/stores/prefs'
import { toBulkFilter, toParams, useUsers } from '../src/stores/users'
import { useSession } from '../src/stores/session'
import { ApiError } from '../src/api/client'

function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } })
}

beforeEach(() => {
  setActivePinia(createPinia())
  localStorage.clear()
  vi.restoreAllMocks()
})

describe('prefs', () => {
  test('locale: saved choice, else the browser language, else English', () => {
    expect(pickLocale('ru', ['fa-IR'])).toBe('ru')
    expect(pickLocale(null, ['fa-IR', 'en'])).toBe('fa')
    expect(pickLocale(null, ['zh-TW'])).toBe('zh-CN')
    expect(pickLocale('xx', ['de-DE'])).toBe('en')
  })
  test('Persian lays the page out right to left, on <html>', () => {
    expect(dirOf('fa')).toBe('rtl')
    expect(dirOf('zh-CN')).toBe('ltr')
    const p = usePrefs()
    p.setLocale('fa')
    expect(document.documentElement.dir).toBe('rtl')
    expect(document.documentElement.lang).toBe('fa')
    expect(localStorage.getItem('boxfleet.locale')).toBe('fa')
    p.setLocale('en')
    expect(document.documentElement.dir).toBe('ltr')
  })
  test('theme: system follows the OS, explicit choices win', () => {
    const p = usePrefs()
    p.systemDark = true
    p.setTheme('system')
    expect(p.dark).toBe(true)
    expect(document.documentElement.dataset.theme).toBe('dark')
    p.setTheme('light')
    expect(p.dark).toBe(false)
    expect(localStorage.getItem('boxfleet.theme')).toBe('light')
  })
})

describe('users store', () => {
  test('query to API parameters, empty ones left out by the client', () => {
    const u = useUsers()
    u.setQuery({ status: 'limited', filter: ['over90', 'expiring3d'], sort: '-used' })
    expect(toParams(u.query)).toMatchObject({ status: 'limited', filter: 'over90,expiring3d', sort: '-used', offset: 0, limit: 50 })
    expect(toBulkFilter(u.query)).toEqual({ status: 'limited', filter: 'over90,expiring3d' })
  })
  test('changing a filter goes back to the first page; paging does not', () => {
    const u = useUsers()
    u.setQuery({ offset: 100 })
    expect(u.query.offset).toBe(100)
    u.setQuery({ search: 'bob' })
    expect(u.query.offset).toBe(0)
  })
  test('load sends the query and keeps the page', async () => {
    const f = vi.spyOn(globalThis, 'fetch').mockResolvedValue(answer(200, { users: [{ name: 'a' }], total: 7, limit: 50, offset: 0, live: false }))
    const u = useUsers()
    u.setQuery({ search: 'a b', sort: 'expire' })
    await u.load()
    const url = String(f.mock.calls[0][0])
    expect(url).toContain('api/v1/users?')
    expect(url).toContain('search=a+b')
    expect(url).toContain('sort=expire')
    expect(url).not.toContain('status=')
    expect(f.mock.calls[0][1]?.credentials).toBe('same-origin')
    expect(u.total).toBe(7)
    expect(u.live).toBe(false)
  })
  test('an API error is kept for the page to show', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(answer(400, { error: { code: 'invalid', message: 'bad sort', field: 'sort' } }))
    const u = useUsers()
    await u.load()
    expect(u.error).toBe('bad sort')
  })
})

describe('session store', () => {
  test('login posts name, password and TOTP; a 429 carries the retry time', async () => {
    const f = vi.spyOn(globalThis, 'fetch').mockResolvedValue(
      answer(429, { error: { code: 'rate_limited', message: 'too many failed logins' } }, { 'Retry-After': '120' }))
    const s = useSession()
    const err = await s.login('admin', 'pw', '123456').catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.status).toBe(429)
    expect(err.retryAfter).toBe(120)
    expect(JSON.parse(String(f.mock.calls[0][1]?.body))).toEqual({ name: 'admin', password: 'pw', totp: '123456' })
    expect(s.me).toBeNull()
  })
  test('check: 401 means logged out, not an error', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(answer(401, { error: { code: 'unauthorized', message: 'no' } }))
    const s = useSession()
    expect(await s.check()).toBeNull()
    expect(s.checked).toBe(true)
  })
  test('roles decide what the UI offers', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(answer(200, { actor: 'admin:v', name: 'v', role: 'viewer', via: 'session' }))
    const s = useSession()
    await s.check()
    expect(s.canEdit).toBe(false)
    expect(s.isStaff).toBe(true)
    expect(s.isOwner).toBe(false)
  })
})

describe('users page views', async () => {
  const v = await import('../src/stores/views')
  const q = { status: 'limited', plan: '', group: 'eu', search: '', filter: ['over90'], sort: '-used', limit: 100 }
  test('hidden columns are per admin and ignore unknown names', () => {
    v.saveHidden('alice', ['rate', 'plan'])
    expect(v.loadHidden('alice')).toEqual(['rate', 'plan'])
    expect(v.loadHidden('bob')).toEqual([])
    localStorage.setItem('boxfleet.users.hidden.carol', JSON.stringify(['rate', 'nonsense']))
    expect(v.loadHidden('carol')).toEqual(['rate'])
    localStorage.setItem('boxfleet.users.hidden.dave', '{not json')
    expect(v.loadHidden('dave')).toEqual([])
  })
  test('saved views: per admin, replaced by name, sorted, deleted', () => {
    v.saveView('alice', { name: 'over quota', query: q, hidden: ['rate'] })
    v.saveView('alice', { name: 'eu', query: { ...q, status: '' }, hidden: [] })
    const again = v.saveView('alice', { name: 'over quota', query: { ...q, limit: 500 }, hidden: [] })
    expect(again.map((x) => x.name)).toEqual(['eu', 'over quota'])
    expect(v.loadViews('alice').find((x) => x.name === 'over quota')?.query.limit).toBe(500)
    expect(v.loadViews('bob')).toEqual([])
    expect(v.deleteView('alice', 'eu').map((x) => x.name)).toEqual(['over quota'])
  })
})
