import { createRouter, createWebHistory } from 'vue-router'
import { useSession } from './stores/session'

// Every page but login is its own chunk, loaded when first visited, so the
// first load carries only the shell.
export const pages = [
  { path: '/', name: 'overview', component: () => import('./views/OverviewPage.vue') },
  { path: '/users', name: 'users', component: () => import('./views/UsersPage.vue') },
  { path: '/users/:name', name: 'user', component: () => import('./views/UserPage.vue') },
  { path: '/nodes', name: 'nodes', component: () => import('./views/NodesPage.vue') },
  { path: '/traffic', name: 'traffic', component: () => import('./views/TrafficPage.vue') },
  { path: '/events', name: 'events', component: () => import('./views/EventsPage.vue') },
  { path: '/plans', name: 'plans', component: () => import('./views/PlansPage.vue') },
  { path: '/hooks', name: 'hooks', component: () => import('./views/HooksPage.vue') },
  { path: '/admins', name: 'admins', component: () => import('./views/AdminsPage.vue'), meta: { owner: true } },
  { path: '/sessions', name: 'sessions', component: () => import('./views/SessionsPage.vue') },
  { path: '/account', name: 'account', component: () => import('./views/AccountPage.vue') },
]

export function makeRouter() {
  // The document's <base> is /…/ui/ (the server sets it), so routes are
  // relative to wherever the UI is mounted.
  const base = typeof document !== 'undefined' ? new URL(document.baseURI).pathname : '/ui/'
  const router = createRouter({
    history: createWebHistory(base),
    routes: [
      { path: '/login', name: 'login', component: () => import('./views/LoginPage.vue'), meta: { public: true } },
      ...pages,
      { path: '/:rest(.*)*', redirect: '/' },
    ],
  })
  router.beforeEach(async (to) => {
    const s = useSession()
    if (!s.checked) {
      try {
        await s.check()
      } catch {
        // a controller that does not answer: the login page says so
      }
    }
    if (!to.meta.public && !s.me) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
    if (to.meta.owner && !s.isOwner) return { name: 'overview' }
    return true
  })
  return router
}
