-- lua/ui_assets.lua: the web UI's stylesheet and script, served as
-- /assets/ui.css and /assets/ui.js (lua/ui_pages.lua's `assets`); the
-- stylesheet is also inlined in the one-file copy of a run. The pages run
-- under a CSP without inline script or style, so all of it lives here.
local assets = {}

-- Outcome colours come in pairs (text or fill, badge background), one set
-- per scheme; everything else is greys and one link colour.
assets.css = [[
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;
--link:#0550ae;--ok:#1a7f37;--ok-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--run:#0969da;--run-bg:#ddf4ff;
--neutral:#6e7781;--neutral-bg:#eaeef2;--warn:#9a6700;
--c1:#0969da;--c2:#bf3989;--c3:#1a7f37;--c4:#bc4c00;--c5:#8250df;--c6:#57606a}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;
--head:#151b23;--link:#4493f8;--ok:#3fb950;--ok-bg:#12351f;--fail:#f85149;--fail-bg:#42161a;--run:#4493f8;
--run-bg:#0d2d52;--neutral:#9198a1;--neutral-bg:#262c36;--warn:#d29922;
--c1:#4493f8;--c2:#f778ba;--c3:#3fb950;--c4:#f0883e;--c5:#a371f7;--c6:#9198a1}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
a{color:var(--link);text-decoration:none}
a:hover{text-decoration:underline}
header.top{display:flex;gap:16px;align-items:baseline;padding:8px 16px;border-bottom:1px solid var(--line);
background:var(--head)}
header.top .home{font-weight:700;color:var(--fg)}
main{max-width:1280px;margin:0 auto;padding:16px}
h1{font-size:22px;margin:4px 0 8px}
h2{font-size:17px;margin:24px 0 8px}
section{margin-top:8px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
.muted{color:var(--muted)}
.sub{margin:0 0 8px;overflow-wrap:anywhere}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:4px 16px;margin:8px 0}
dl.facts div{min-width:0}
dl.facts dt{color:var(--muted);font-size:12px}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.links a{margin-right:12px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
th{background:var(--head);font-weight:600;font-size:12.5px;position:sticky;top:0}
td.num,th.num{text-align:right}
td.wrap{white-space:normal;min-width:14em;max-width:40em;overflow-wrap:anywhere}
tr.error-row td{max-width:none;color:var(--fail);padding-top:0}
tbody tr:hover{background:var(--head)}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;line-height:18px}
.badge.ok{color:var(--ok);background:var(--ok-bg)}
.badge.fail{color:var(--fail);background:var(--fail-bg)}
.badge.run{color:var(--run);background:var(--run-bg)}
.badge.neutral{color:var(--neutral);background:var(--neutral-bg)}
form.filters{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:flex-end;margin:8px 0 12px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
select,button{font:inherit;color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:6px;
padding:4px 8px;max-width:16em}
button{cursor:pointer;background:var(--head)}
.pager{margin:12px 0}
svg{display:block}
svg text{fill:var(--fg);font-size:10px;font-family:inherit}
svg .axis text,svg text.axis{fill:var(--muted)}
svg line.tick{stroke:var(--line);stroke-width:1}
svg line.base{stroke:var(--muted);stroke-width:1}
svg .ok{fill:var(--ok)}
svg .fail{fill:var(--fail)}
svg .run{fill:var(--run);fill-opacity:.7}
svg .neutral{fill:var(--neutral);fill-opacity:.6}
svg .bar:hover{fill-opacity:1;opacity:.75}
svg.jobs{display:inline-block;vertical-align:middle;background:var(--neutral-bg);border-radius:2px}
svg .c1{fill:var(--c1)}svg .c2{fill:var(--c2)}svg .c3{fill:var(--c3)}
svg .c4{fill:var(--c4)}svg .c5{fill:var(--c5)}svg .c6{fill:var(--c6)}
td.statuses,td.counts{white-space:normal;min-width:11em;font-size:12.5px}
@media (max-width:640px){.opt{display:none}}
pre.log{margin:0;padding:8px;background:var(--head);border:1px solid var(--line);border-radius:6px;
overflow-x:auto;line-height:1.4;white-space:pre}
.log .debug{color:var(--muted)}
.log .warn{color:var(--warn)}
.log .error{color:var(--fail);font-weight:600}
footer{color:var(--muted);font-size:12px;margin-top:24px}
@media (max-width:600px){main{padding:8px}h1{font-size:19px}header.top{padding:8px}
th,td{padding:3px 6px}dl.facts{grid-template-columns:repeat(2,minmax(0,1fr))}}
]]

-- A live page (body data-live="N") fetches itself every N seconds and
-- swaps its <main>; it stops once the fresh copy is no longer live.
assets.js = [[
"use strict";
(function () {
  var body = document.body;
  var every = parseInt(body.dataset.live, 10);
  if (!(every > 0)) return;
  function refresh() {
    if (document.hidden) return later();
    fetch(location.href, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var next = fresh.querySelector("main"), main = document.querySelector("main");
        if (next && main) {
          main.replaceChildren.apply(main, Array.prototype.map.call(
            Array.prototype.slice.call(next.childNodes), function (n) { return document.adoptNode(n); }));
          document.title = fresh.title;
        }
        if (fresh.body && fresh.body.dataset.live) return later();
        delete body.dataset.live;
      })
      .catch(later); // the server restarting: try again at the next tick
  }
  function later() { setTimeout(refresh, every * 1000); }
  later();
})();
]]

return assets
