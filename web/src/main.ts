import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { makeRouter } from './router'
import { i18n } from './i18n'
import { usePrefs } from './stores/prefs'
import { useSession } from './stores/session'
import { onUnauthorized } from './api/client'
import './style.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)
const router = makeRouter()
app.use(router)
app.use(i18n)

const prefs = usePrefs()
i18n.global.locale.value = prefs.locale
prefs.apply()
prefs.watchSystem()

// A session that ended (idle timeout, revoked elsewhere) sends the user to
// the login page, back to where they were afterwards.
onUnauthorized(() => {
  useSession().expired()
  const cur = router.currentRoute.value
  if (cur.name !== 'login') router.push({ name: 'login', query: { next: cur.fullPath } })
})

app.mount('#app')
