import { beforeEach, describe, expect, test, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { createRouter, createMemoryHistory } from 'vue-router'
import { i18n } from '../src/i18n'
import UsageBar from '../src/components/UsageBar.vue'
import StatusTag from '../src/components/StatusTag.vue'
import LoginPage from '../src/views/LoginPage.vue'

beforeEach(() => {
  setActivePinia(createPinia())
  i18n.global.locale.value = 'en'
  vi.restoreAllMocks()
})

describe('UsageBar', () => {
  test('shows used against the limit and turns red past it', () => {
    const w = mount(UsageBar, { props: { used: 11 * 1024 ** 3, limit: 10 * 1024 ** 3, reset: 'month' }, global: { plugins: [i18n] } })
    expect(w.text()).toContain('11.0 GiB / 10.0 GiB')
    expect(w.text()).toContain('monthly')
    expect(w.html()).toContain('n-progress')
    expect(w.find('.n-progress').classes().join(' ')).toMatch(/error/)
  })
  test('no limit: no bar, an infinity sign', () => {
    const w = mount(UsageBar, { props: { used: 5, limit: 0 }, global: { plugins: [i18n] } })
    expect(w.text()).toContain('/ ∞')
    expect(w.find('.n-progress').exists()).toBe(false)
  })
})

describe('StatusTag', () => {
  test('translated status with its reason', () => {
    i18n.global.locale.value = 'zh-CN'
    const w = mount(StatusTag, { props: { status: 'disabled', reason: 'UserAbuse fired' }, global: { plugins: [i18n] } })
    expect(w.text()).toContain('已停用')
    expect(w.text()).toContain('UserAbuse fired')
  })
})

describe('LoginPage', () => {
  async function mountLogin() {
    const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/', component: { template: '<div/>' } }, { path: '/login', name: 'login', component: LoginPage }] })
    router.push('/login')
    await router.isReady()
    return mount(LoginPage, { global: { plugins: [i18n, router] }, attachTo: document.body })
  }
  test('a locked-out login says when to try again', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({ error: { code: 'rate_limited', message: 'too many' } }),
      { status: 429, headers: { 'Retry-After': '600' } }))
    const w = await mountLogin()
    await w.find('[data-test=login-name]').setValue('admin')
    await w.find('[data-test=login-password]').setValue('nope')
    await w.find('form').trigger('submit')
    await flushPromises()
    const msg = w.find('[data-test=login-locked]')
    expect(msg.exists()).toBe(true)
    expect(msg.text()).toContain('Try again after')
    // ten minutes from now, in the page's locale
    const at = new Date(Date.now() + 600000)
    expect(msg.text()).toContain(String(at.getFullYear()))
    w.unmount()
  })
  test('a wrong password shows one message for every cause', async () => {
    vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(JSON.stringify({ error: { code: 'unauthorized', message: 'x' } }), { status: 401 }))
    const w = await mountLogin()
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('[data-test=login-error]').text()).toBe('Wrong name, password or code.')
    w.unmount()
  })
})

describe('AccountPage', () => {
  async function mountAccount(role = 'operator', totp?: boolean) {
    const AccountPage = (await import('../src/views/AccountPage.vue')).default
    const { useSession } = await import('../src/stores/session')
    const s = useSession()
    s.me = { actor: 'admin:op', name: 'op', role: role as 'operator', via: 'session', totp_enabled: totp }
    s.checked = true
    const router = createRouter({ history: createMemoryHistory(), routes: [
      { path: '/', component: { template: '<div/>' } },
      { path: '/login', name: 'login', component: { template: '<div data-test="login"/>' } },
      { path: '/account', name: 'account', component: AccountPage },
    ] })
    router.push('/account')
    await router.isReady()
    const w = mount(AccountPage, { global: { plugins: [i18n, router] }, attachTo: document.body })
    return { w, router, s }
  }
  test('two different new passwords: refused before any request', async () => {
    const fetch = vi.spyOn(globalThis, 'fetch')
    const { w } = await mountAccount()
    await w.find('[data-test=pw-current]').setValue('old-password')
    await w.find('[data-test=pw-new]').setValue('new-password-1')
    await w.find('[data-test=pw-repeat]').setValue('new-password-2')
    await w.find('form').trigger('submit')
    await flushPromises()
    expect(w.find('[data-test=pw-error]').text()).toBe('The two new passwords differ.')
    expect(fetch).not.toHaveBeenCalled()
    w.unmount()
  })
  test('a changed password sends the admin to sign in again', async () => {
    const fetch = vi.spyOn(globalThis, 'fetch').mockResolvedValue(new Response(null, { status: 204 }))
    const { w, router, s } = await mountAccount()
    await w.find('[data-test=pw-current]').setValue('old-password')
    await w.find('[data-test=pw-new]').setValue('new-password-1')
    await w.find('[data-test=pw-repeat]').setValue('new-password-1')
    await w.find('form').trigger('submit')
    await flushPromises()
    const [url, init] = fetch.mock.calls[0] as [string, RequestInit]
    expect(url).toMatch(/api\/v1\/session\/password$/)
    expect(init.method).toBe('PUT')
    expect(JSON.parse(String(init.body))).toEqual({ current_password: 'old-password', new_password: 'new-password-1' })
    expect(s.me).toBeNull()
    expect(router.currentRoute.value.name).toBe('login')
    w.unmount()
  })
  test('TOTP: the secret and QR code, a wrong code explained, then the recovery codes once', async () => {
    const answers = [
      new Response(JSON.stringify({ secret: 'JBSWY3DPEHPK3PXPJBSWY3DP', otpauth_uri: 'otpauth://totp/boxfleet:op?secret=JBSWY3DPEHPK3PXPJBSWY3DP&issuer=boxfleet' }), { status: 200 }),
      new Response(JSON.stringify({ error: { code: 'invalid', message: 'code: does not match', field: 'code' } }), { status: 400 }),
      new Response(JSON.stringify({ recovery_codes: ['AAAA-BBBB-CCCC-DDDD', 'EEEE-FFFF-GGGG-HHHH'] }), { status: 200 }),
    ]
    const fetch = vi.spyOn(globalThis, 'fetch').mockImplementation(async () => answers.shift()!)
    const { w } = await mountAccount()
    expect(w.find('[data-test=totp-state]').text()).toMatch(/not known/)
    await w.find('[data-test=totp-begin]').trigger('click')
    await flushPromises()
    expect(w.find('[data-test=totp-secret]').text()).toBe('JBSW Y3DP EHPK 3PXP JBSW Y3DP')
    await w.find('[data-test=totp-code]').setValue('123 456')
    await w.find('[data-test=totp-card] form').trigger('submit')
    await flushPromises()
    expect(w.find('[data-test=totp-error]').text()).toMatch(/does not match/)
    expect(JSON.parse(String((fetch.mock.calls[1] as [string, RequestInit])[1].body))).toEqual({ code: '123456' })
    await w.find('[data-test=totp-card] form').trigger('submit')
    await flushPromises()
    expect(w.find('[data-test=recovery-codes]').text()).toContain('EEEE-FFFF-GGGG-HHHH')
    expect(w.find('[data-test=totp-state]').text()).toBe('on')
    w.unmount()
  })
  test('TOTP state comes from the session answer, for every role', async () => {
    const { w } = await mountAccount('viewer', false)
    expect(w.find('[data-test=totp-state]').text()).toBe('off')
    expect(w.find('[data-test=totp-disable]').exists()).toBe(false)
    w.unmount()
  })
  test('a non-owner turns its own TOTP off with its password, a wrong code explained', async () => {
    const answers = [
      new Response(JSON.stringify({ error: { code: 'invalid', message: 'code: is wrong or was used already', field: 'code' } }), { status: 400 }),
      new Response(null, { status: 204 }),
    ]
    const fetch = vi.spyOn(globalThis, 'fetch').mockImplementation(async () => answers.shift()!)
    const { w, router, s } = await mountAccount('reseller', true)
    expect(w.find('[data-test=totp-state]').text()).toBe('on')
    await w.find('[data-test=totp-disable]').trigger('click')
    await w.find('[data-test=totp-off-code]').setValue('111 111')
    await w.find('[data-test=totp-card] form').trigger('submit')
    await flushPromises()
    let [url, init] = fetch.mock.calls[0] as [string, RequestInit]
    expect(url).toMatch(/api\/v1\/session\/totp$/)
    expect(init.method).toBe('DELETE')
    expect(JSON.parse(String(init.body))).toEqual({ code: '111111' })
    expect(w.find('[data-test=totp-off-error]').text()).toMatch(/used already/)
    await w.find('[data-test=totp-off-code]').setValue('')
    await w.find('[data-test=totp-off-password]').setValue('my-password')
    await w.find('[data-test=totp-card] form').trigger('submit')
    await flushPromises()
    ;[url, init] = fetch.mock.calls[1] as [string, RequestInit]
    expect(JSON.parse(String(init.body))).toEqual({ current_password: 'my-password' })
    expect(s.me).toBeNull()
    expect(router.currentRoute.value.name).toBe('login')
    w.unmount()
  })
})

describe('NodesPage drain guard', () => {
  const node = { name: 'n1', drained: false, labels: { group: 'eu' }, last_seen: '2026-01-01T00:00:00Z', health: { score: 1 } }
  async function mountNodes(refusal: { code: string; message: string; field?: string }) {
    const calls: string[] = []
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = String(input)
      calls.push(`${init?.method ?? 'GET'} ${url}`)
      if (url.includes('/drain')) {
        if (url.includes('force=true')) return new Response(JSON.stringify({ ...node, drained: true }), { status: 200 })
        return new Response(JSON.stringify({ error: refusal }), { status: 409 })
      }
      return new Response(JSON.stringify({ nodes: [node] }), { status: 200 })
    })
    const { useSession } = await import('../src/stores/session')
    useSession().me = { actor: 'admin:op', name: 'op', role: 'operator', via: 'session' }
    const NodesPage = (await import('../src/views/NodesPage.vue')).default
    const w = mount(NodesPage, { global: { plugins: [i18n] }, attachTo: document.body })
    await flushPromises()
    await w.find('[data-test=drain-n1]').trigger('click')
    await flushPromises()
    return { w, calls }
  }
  test("the guard's refusal stays on the card with a way to force it", async () => {
    const { w, calls } = await mountNodes({ code: 'conflict', field: 'force', message: 'draining n1 would leave 0 undrained healthy node(s) in its group "eu"' })
    const r = w.find('[data-test=drain-refused]')
    expect(r.text()).toContain('The drain guard refused')
    expect(r.text()).toContain('would leave 0 undrained healthy node(s)')
    expect(w.find('[data-test=force-drain-n1]').exists()).toBe(true)
    expect(calls.filter((c) => c.includes('/drain'))).toEqual([expect.stringMatching(/^POST .*\/api\/v1\/nodes\/n1\/drain$/)])
    // Forcing asks first, then sends force=true, and the card clears.
    await w.find('[data-test=force-drain-n1]').trigger('click')
    await flushPromises()
    const yes = document.querySelector<HTMLButtonElement>('.n-popconfirm__action .n-button--primary-type')
    expect(yes).not.toBeNull()
    yes!.click()
    await flushPromises()
    expect(calls.filter((c) => c.includes('/drain'))[1]).toMatch(/^POST .*\/api\/v1\/nodes\/n1\/drain\?force=true$/)
    expect(w.find('[data-test=drain-refused]').exists()).toBe(false)
    w.unmount()
  })
  test('another refusal is shown as is, with nothing to force', async () => {
    const { w } = await mountNodes({ code: 'conflict', message: 'something else' })
    expect(w.find('[data-test=drain-refused]').text()).toContain('something else')
    expect(w.find('[data-test=force-drain-n1]').exists()).toBe(false)
    w.unmount()
  })
})
