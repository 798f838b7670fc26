import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

/** The API the development server forwards to (`npm run dev` listens on 3000 by default). */
const api = process.env.PORTCULLIS_API_URL ?? "http://localhost:3000";

// The portal builds into dist/web, which the server serves (src/http/routes/portal.ts).
export default defineConfig({
  root,
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    // No inline scripts or styles: the page's Content-Security-Policy allows only files from 'self'.
    assetsInlineLimit: 0,
  },
  worker: { format: "es" },
  server: {
    proxy: Object.fromEntries(["/v1", "/0", "/dev", "/.well-known"].map((path) => [path, api])),
  },
});
