import { createI18n } from 'vue-i18n'
import en from './en.json'
import zhCN from './zh-CN.json'
import ru from './ru.json'
import fa from './fa.json'

export const messages = { en, 'zh-CN': zhCN, ru, fa }

export const i18n = createI18n({
  legacy: false,
  locale: 'en',
  fallbackLocale: 'en',
  messages,
})
