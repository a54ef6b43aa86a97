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
