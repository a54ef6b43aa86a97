import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// base '' keeps every asset URL relative, so the build works under whatever
// path prefix a reverse proxy puts before /ui/ (the Go side sets <base>).
export default defineConfig({
  base: '',
  plugins: [vue()],
  build: {
    outDir: '../controller/webui/dist',
    // dist/ holds the committed .gitkeep and .gitignore: empty it by hand
    // (scripts/compress.mjs) rather than let Vite delete them.
    emptyOutDir: false,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 600,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8080', '/sub': 'http://127.0.0.1:8080' },
  },
})
