// Preloaded into Portkey's gateway (node --import): works around a bug that makes every streamed request
// fail with HTTP 500 ("TypeError: immutable") on Node 20 with @hono/node-server 1.x, where the gateway
// appends its headers to the upstream fetch response's immutable Headers. Only streamed (SSE) upstream
// responses are re-wrapped with mutable headers; the non-streamed path runs exactly as shipped.
const upstreamFetch = globalThis.fetch;
const NativeResponse = globalThis.Response;

globalThis.fetch = async function fetchWithMutableStreamHeaders(...args) {
  const response = await upstreamFetch(...args);
  if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    return response;
  }
  return new NativeResponse(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};
