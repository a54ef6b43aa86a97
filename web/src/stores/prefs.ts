// Language and theme: remembered in localStorage (they are not secrets),
// applied to <html lang dir> so that Persian lays out right to left.
import { defineStore } from 'pinia'

export const locales = [
  { code: 'en', name: 'English', dir: 'ltr' },
  { code: 'zh-CN', name: '简体中文', dir: 'ltr' },
  { code: 'ru', name: 'Русский', dir: 'ltr' },
  { code: 'fa', name: 'فارسی', dir: 'rtl' },
] as const

export type Locale = (typeof locales)[number]['code']
export type Theme = 'light' | 'dark' | 'system'

function storage(): Storage | null {
  try {
    return window.localStorage
  } catch {
    return null
  }
}

// pickLocale takes the saved choice, else the browser's first supported
// language, else English.
export function pickLocale(saved: string | null, langs: readonly string[]): Locale {
  const known = locales.map((l) => l.code) as string[]
  if (saved && known.includes(saved)) return saved as Locale
  for (const l of langs) {
    const low = l.toLowerCase()
    if (low.startsWith('zh')) return 'zh-CN'
    if (low.startsWith('ru')) return 'ru'
    if (low.startsWith('fa')) return 'fa'
    if (low.startsWith('en')) return 'en'
  }
  return 'en'
}

export function dirOf(l: Locale): 'ltr' | 'rtl' {
  return locales.find((x) => x.code === l)?.dir ?? 'ltr'
}

export const usePrefs = defineStore('prefs', {
  state: () => {
    const s = storage()
    const theme = (s?.getItem('boxfleet.theme') as Theme | null) ?? 'system'
    return {
      locale: pickLocale(s?.getItem('boxfleet.locale') ?? null, typeof navigator !== 'undefined' ? navigator.languages ?? [] : []),
      theme: (['light', 'dark', 'system'].includes(theme) ? theme : 'system') as Theme,
      // How the user page shows usage per day: a chart, or a table for
      // screen readers and for copying numbers.
      usageView: (s?.getItem('boxfleet.usageView') === 'table' ? 'table' : 'chart') as 'chart' | 'table',
      systemDark: typeof matchMedia !== 'undefined' && matchMedia('(prefers-color-scheme: dark)').matches,
    }
  },
  getters: {
    dark: (s) => s.theme === 'dark' || (s.theme === 'system' && s.systemDark),
    dir: (s) => dirOf(s.locale),
  },
  actions: {
    setLocale(l: Locale) {
      this.locale = l
      storage()?.setItem('boxfleet.locale', l)
      this.apply()
    },
    setTheme(t: Theme) {
      this.theme = t
      storage()?.setItem('boxfleet.theme', t)
      this.apply()
    },
    setUsageView(v: 'chart' | 'table') {
      this.usageView = v
      storage()?.setItem('boxfleet.usageView', v)
    },
    apply() {
      const html = document.documentElement
      html.lang = this.locale
      html.dir = this.dir
      html.dataset.theme = this.dark ? 'dark' : 'light'
    },
    watchSystem() {
      if (typeof matchMedia === 'undefined') return
      matchMedia('(prefers-color-scheme: dark)').addEventListener('change', (e) => {
        this.systemDark = e.matches
        this.apply()
      })
    },
  },
})
