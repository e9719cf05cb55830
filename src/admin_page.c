/* admin_page.c - GET / on the admin listener: the live page, one self-contained document, and the CSP that lets exactly its own script and style run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "admin_page.h"

/*
 * The page: a style, a script and the tables they fill, with no external
 * asset.  The script opens /events (Server-Sent Events): each summary
 * redraws the requests in flight and the totals; each cancellation adds a
 * row and redraws the histogram; /cancellations?limit=100 fills the table
 * when the stream (re)opens, rows merged by seq.  Rows carry
 * data-id="REQUEST_ID" in the tables #inflight and #cancellations.
 */

/* Up to the style's opening tag. */
static const char page_head[] =
	"<!doctype html>\n"
	"<html lang=\"en\">\n"
	"<head>\n"
	"<meta charset=\"utf-8\">\n"
	"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	"<meta name=\"referrer\" content=\"no-referrer\">\n"
	"<link rel=\"icon\" href=\"data:,\">\n"
	"<title>ctxproxy &middot; live contexts</title>\n"
	"<style>";

/* The style: its hash is in the CSP. */
static const char page_style[] =
	"\n"
	":root{--bg:#f5f6f8;--fg:#1c2330;--mute:#677284;--card:#fff;--line:#e2e5ea;--head:#f0f2f5;--acc:#2f6fde;--warn:#b45309;--bad:#b91c1c;--ok:#15803d;\n"
	"font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;color-scheme:light dark}\n"
	"@media (prefers-color-scheme:dark){:root{--bg:#111419;--fg:#e3e7ed;--mute:#8a94a4;--card:#191d24;--line:#2a303a;--head:#1f242c;--acc:#6f9fff;--warn:#f59e0b;--bad:#f87171;--ok:#4ade80}}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;background:var(--bg);color:var(--fg)}\n"
	"header{display:flex;align-items:center;justify-content:space-between;gap:16px;padding:12px 24px;background:var(--card);border-bottom:1px solid var(--line)}\n"
	"h1{margin:0;font-size:17px;font-weight:650}\n"
	"h1 span{color:var(--mute);font-weight:400}\n"
	".meta{display:flex;gap:14px;align-items:center;color:var(--mute);font-size:13px}\n"
	".status::before{content:\"\";display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:6px;background:currentColor}\n"
	".status.on{color:var(--ok)}\n"
	".status.off{color:var(--bad)}\n"
	".partial{color:var(--warn)}\n"
	"main{padding:18px 24px 8px;max-width:1500px}\n"
	".cards{display:grid;grid-template-columns:minmax(170px,1fr) minmax(260px,2fr) minmax(340px,2fr);gap:14px;margin-bottom:22px}\n"
	".card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}\n"
	".label{color:var(--mute);font-size:12.5px;font-weight:600;margin-bottom:6px}\n"
	".big{font-size:34px;font-weight:650;font-variant-numeric:tabular-nums;line-height:1.1}\n"
	".small{color:var(--mute);font-size:12.5px;margin-top:4px}\n"
	"dl{display:grid;grid-template-columns:1fr auto;gap:2px 14px;margin:0;font-size:13px}\n"
	"dt{color:var(--mute)}\n"
	"dd{margin:0;text-align:right;font-variant-numeric:tabular-nums;font-weight:600}\n"
	"dd.zero{color:var(--mute);font-weight:400}\n"
	"#hist{width:100%;height:130px;display:block}\n"
	"#hist .bar{fill:var(--acc)}\n"
	"#hist .axis{fill:var(--mute);font-size:10px}\n"
	"#hist .count{fill:var(--fg);font-size:10px}\n"
	"#hist .base{stroke:var(--line)}\n"
	"h2{font-size:14px;margin:0 0 8px;font-weight:650}\n"
	"h2 span{color:var(--mute);font-weight:400;font-size:12.5px;margin-left:6px}\n"
	"section{margin-bottom:24px}\n"
	".wrap{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:8px}\n"
	"table{width:100%;border-collapse:collapse}\n"
	"th,td{padding:5px 10px;text-align:left;white-space:nowrap;border-bottom:1px solid var(--line)}\n"
	"th{position:sticky;top:0;background:var(--head);color:var(--mute);font-size:12px;font-weight:600}\n"
	"tbody tr:last-child td{border-bottom:0}\n"
	"tbody tr:hover{background:var(--head)}\n"
	".num{text-align:right;font-variant-numeric:tabular-nums}\n"
	".mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}\n"
	"td.path{max-width:32em;overflow:hidden;text-overflow:ellipsis}\n"
	".low{color:var(--bad);font-weight:600}\n"
	".none{color:var(--mute)}\n"
	".tag{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;border:1px solid var(--line);background:var(--head)}\n"
	".tag.client_disconnect{color:var(--warn)}\n"
	".tag.deadline_exceeded,.tag.header_timeout,.tag.connect_timeout,.tag.idle_timeout{color:var(--bad)}\n"
	".empty{padding:14px 12px;color:var(--mute);text-align:center}\n"
	"tr.new td{animation:flash 2s ease-out}\n"
	"@keyframes flash{from{background:rgba(111,159,255,.28)}to{background:transparent}}\n"
	"footer{padding:6px 24px 22px;color:var(--mute);font-size:12.5px}\n"
	"footer a{color:var(--acc)}\n"
	"@media (max-width:980px){.cards{grid-template-columns:1fr}}\n";

/* From the style's closing tag to the script's opening tag. */
static const char page_body[] =
	"</style>\n"
	"</head>\n"
	"<body>\n"
	"<header>\n"
	"<h1>ctxproxy <span>live contexts</span></h1>\n"
	"<div class=\"meta\"><span id=\"partial\" class=\"partial\" hidden>partial: a worker did not answer</span><span id=\"updated\"></span><span id=\"status\" class=\"status off\">connecting&hellip;</span></div>\n"
	"</header>\n"
	"<main>\n"
	"<div class=\"cards\">\n"
	"<div class=\"card\"><div class=\"label\">In flight</div><div class=\"big\" id=\"n-inflight\">&ndash;</div><div class=\"small\" id=\"per-worker\"></div></div>\n"
	"<div class=\"card\"><div class=\"label\">Cancellations since start, by cause</div><dl id=\"totals\"></dl></div>\n"
	"<div class=\"card\"><div class=\"label\">Propagation (&micro;s, at most), last <span id=\"hist-n\">0</span> cancellations</div><svg id=\"hist\" viewBox=\"0 0 360 120\" role=\"img\" aria-label=\"histogram of cancellation propagation times\"></svg></div>\n"
	"</div>\n"
	"<section>\n"
	"<h2>In flight<span>oldest first</span></h2>\n"
	"<div class=\"wrap\"><table id=\"inflight\">\n"
	"<thead><tr><th>id</th><th>method</th><th>path</th><th>route</th><th>phase</th><th class=\"num\">age</th><th class=\"num\">budget left</th><th class=\"num\">attempts</th><th class=\"num\">worker</th></tr></thead>\n"
	"<tbody></tbody>\n"
	"</table><div class=\"empty\" id=\"inflight-empty\">Nothing in flight.</div></div>\n"
	"</section>\n"
	"<section>\n"
	"<h2>Cancellations<span>newest first</span></h2>\n"
	"<div class=\"wrap\"><table id=\"cancellations\">\n"
	"<thead><tr><th>time</th><th>id</th><th>method</th><th>path</th><th>route</th><th>cause</th><th>phase</th><th class=\"num\">status</th><th class=\"num\">propagation &micro;s</th><th class=\"num\">worker</th></tr></thead>\n"
	"<tbody></tbody>\n"
	"</table><div class=\"empty\" id=\"cancellations-empty\">No cancellation yet.</div></div>\n"
	"</section>\n"
	"</main>\n"
	"<footer>The same data for scripts: <a href=\"/requests\">/requests</a> &middot; <a href=\"/cancellations?limit=100\">/cancellations</a> &middot; <a href=\"/events\">/events</a> (Server-Sent Events) &middot; <a href=\"/metrics\">/metrics</a></footer>\n"
	"<script>";

/* The script: its hash is in the CSP.  It builds the DOM with
 * textContent only: no data ever goes through innerHTML. */
static const char page_script[] =
	"\n"
	"\"use strict\";\n"
	"(function () {\n"
	"  var ROWS = 100;\n"
	"  var BOUNDS = [50, 100, 250, 500, 1000, 2000, 5000, 10000, Infinity];\n"
	"  var NAMES = [\"50\", \"100\", \"250\", \"500\", \"1k\", \"2k\", \"5k\", \"10k\", \"more\"];\n"
	"  var SVG = \"http://www.w3.org/2000/svg\";\n"
	"  var cancels = new Map();\n"
	"\n"
	"  function $(id) { return document.getElementById(id); }\n"
	"\n"
	"  function cell(text, cls) {\n"
	"    var td = document.createElement(\"td\");\n"
	"    td.textContent = text === null || text === undefined ? \"\\u2014\" : String(text);\n"
	"    if (cls) td.className = cls;\n"
	"    return td;\n"
	"  }\n"
	"\n"
	"  function ms(v) {\n"
	"    if (v === null || v === undefined) return null;\n"
	"    if (v < 1000) return v + \" ms\";\n"
	"    if (v < 60000) return (v / 1000).toFixed(1) + \" s\";\n"
	"    return Math.floor(v / 60000) + \" min \" + Math.floor(v % 60000 / 1000) + \" s\";\n"
	"  }\n"
	"\n"
	"  function clock(unixMs) {\n"
	"    var d = new Date(unixMs);\n"
	"    function two(n) { return (n < 10 ? \"0\" : \"\") + n; }\n"
	"    return two(d.getHours()) + \":\" + two(d.getMinutes()) + \":\" + two(d.getSeconds()) +\n"
	"      \".\" + String(d.getMilliseconds() + 1000).slice(1);\n"
	"  }\n"
	"\n"
	"  function status(text, on) {\n"
	"    var s = $(\"status\");\n"
	"    s.textContent = text;\n"
	"    s.className = \"status \" + (on ? \"on\" : \"off\");\n"
	"  }\n"
	"\n"
	"  function summary(s) {\n"
	"    var rows = document.createDocumentFragment();\n"
	"    s.requests.forEach(function (r) {\n"
	"      var tr = document.createElement(\"tr\");\n"
	"      var path = cell(r.path, \"path mono\");\n"
	"      var low = r.budget_left_ms !== null && r.budget_left_ms < 100;\n"
	"      tr.dataset.id = r.id;\n"
	"      path.title = r.path;\n"
	"      tr.append(cell(r.id, \"mono\"), cell(r.method), path,\n"
	"        cell(r.route, r.route === null ? \"none\" : \"\"), cell(r.phase),\n"
	"        cell(ms(r.age_ms), \"num\"),\n"
	"        cell(ms(r.budget_left_ms), \"num\" + (low ? \" low\" : r.budget_left_ms === null ? \" none\" : \"\")),\n"
	"        cell(r.attempts, \"num\"), cell(r.worker, \"num\"));\n"
	"      rows.append(tr);\n"
	"    });\n"
	"    $(\"inflight\").tBodies[0].replaceChildren(rows);\n"
	"    $(\"inflight-empty\").hidden = s.requests.length > 0;\n"
	"    $(\"n-inflight\").textContent = s.requests.length;\n"
	"    $(\"per-worker\").textContent = s.workers.map(function (n, i) {\n"
	"      return \"worker \" + i + \": \" + (n === null ? \"no answer\" : n);\n"
	"    }).join(\" \\u00b7 \");\n"
	"    $(\"partial\").hidden = s.complete;\n"
	"    totals(s.totals);\n"
	"    $(\"updated\").textContent = \"updated \" + clock(Date.now());\n"
	"  }\n"
	"\n"
	"  function totals(t) {\n"
	"    var list = document.createDocumentFragment();\n"
	"    Object.keys(t).forEach(function (cause) {\n"
	"      var dt = document.createElement(\"dt\");\n"
	"      var dd = document.createElement(\"dd\");\n"
	"      dt.textContent = cause.replace(/_/g, \" \");\n"
	"      dd.textContent = t[cause];\n"
	"      if (!t[cause]) dd.className = \"zero\";\n"
	"      list.append(dt, dd);\n"
	"    });\n"
	"    $(\"totals\").replaceChildren(list);\n"
	"  }\n"
	"\n"
	"  function add(c) {\n"
	"    if (cancels.has(c.seq)) return false;\n"
	"    cancels.set(c.seq, c);\n"
	"    return true;\n"
	"  }\n"
	"\n"
	"  function history(fresh) {\n"
	"    var list = Array.from(cancels.values()).sort(function (a, b) { return b.seq - a.seq; });\n"
	"    var rows = document.createDocumentFragment();\n"
	"    list.slice(ROWS).forEach(function (c) { cancels.delete(c.seq); });\n"
	"    list = list.slice(0, ROWS);\n"
	"    list.forEach(function (c) {\n"
	"      var tr = document.createElement(\"tr\");\n"
	"      var time = cell(clock(c.unix_ms), \"mono\");\n"
	"      var cause = cell(\"\");\n"
	"      var tag = document.createElement(\"span\");\n"
	"      var path = cell(c.path, \"path mono\");\n"
	"      tag.className = \"tag \" + c.cause;\n"
	"      tag.textContent = c.cause;\n"
	"      cause.replaceChildren(tag);\n"
	"      time.title = c.time;\n"
	"      path.title = c.path;\n"
	"      tr.dataset.id = c.id;\n"
	"      tr.dataset.seq = c.seq;\n"
	"      if (fresh === c.seq) tr.className = \"new\";\n"
	"      tr.append(time, cell(c.id, \"mono\"), cell(c.method), path,\n"
	"        cell(c.route, c.route === null ? \"none\" : \"\"), cause, cell(c.phase),\n"
	"        cell(c.status, \"num\"), cell(c.propagation_us, \"num\"), cell(c.worker, \"num\"));\n"
	"      rows.append(tr);\n"
	"    });\n"
	"    $(\"cancellations\").tBodies[0].replaceChildren(rows);\n"
	"    $(\"cancellations-empty\").hidden = list.length > 0;\n"
	"    histogram(list);\n"
	"  }\n"
	"\n"
	"  function svg(tag, attrs, text) {\n"
	"    var e = document.createElementNS(SVG, tag);\n"
	"    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });\n"
	"    if (text !== undefined) e.textContent = String(text);\n"
	"    return e;\n"
	"  }\n"
	"\n"
	"  function histogram(list) {\n"
	"    var counts = BOUNDS.map(function () { return 0; });\n"
	"    var n = 0, top = 1, w = 360 / BOUNDS.length, parts = document.createDocumentFragment();\n"
	"    list.forEach(function (c) {\n"
	"      if (c.propagation_us === null) return;\n"
	"      n++;\n"
	"      for (var i = 0; i < BOUNDS.length; i++)\n"
	"        if (c.propagation_us <= BOUNDS[i]) { counts[i]++; break; }\n"
	"    });\n"
	"    counts.forEach(function (k) { top = Math.max(top, k); });\n"
	"    counts.forEach(function (k, i) {\n"
	"      var h = Math.round(k / top * 86), x = i * w + 4;\n"
	"      parts.append(svg(\"rect\", { \"class\": \"bar\", x: x, y: 100 - h, width: w - 8, height: h, rx: 2 }));\n"
	"      if (k) parts.append(svg(\"text\", { \"class\": \"count\", x: x + (w - 8) / 2, y: 96 - h, \"text-anchor\": \"middle\" }, k));\n"
	"      parts.append(svg(\"text\", { \"class\": \"axis\", x: x + (w - 8) / 2, y: 114, \"text-anchor\": \"middle\" }, NAMES[i]));\n"
	"    });\n"
	"    parts.append(svg(\"line\", { \"class\": \"base\", x1: 0, x2: 360, y1: 100.5, y2: 100.5 }));\n"
	"    $(\"hist\").replaceChildren(parts);\n"
	"    $(\"hist-n\").textContent = n;\n"
	"  }\n"
	"\n"
	"  function load() {\n"
	"    fetch(\"/cancellations?limit=\" + ROWS, { cache: \"no-store\" })\n"
	"      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })\n"
	"      .then(function (d) { d.cancellations.forEach(add); history(null); })\n"
	"      .catch(function () {});\n"
	"  }\n"
	"\n"
	"  var es = new EventSource(\"/events\");\n"
	"  es.addEventListener(\"open\", function () {\n"
	"    status(\"live\", true);\n"
	"    cancels.clear();\n"
	"    load();\n"
	"  });\n"
	"  es.addEventListener(\"error\", function () { status(\"reconnecting\\u2026\", false); });\n"
	"  es.addEventListener(\"summary\", function (e) { summary(JSON.parse(e.data)); });\n"
	"  es.addEventListener(\"cancellation\", function (e) {\n"
	"    var c = JSON.parse(e.data);\n"
	"    if (add(c)) history(c.seq);\n"
	"  });\n"
	"  history(null);\n"
	"})();\n";

/* After the script. */
static const char page_tail[] =
	"</script>\n"
	"</body>\n"
	"</html>\n";

struct admin_page {
	char *html;
	size_t len;
	char *csp;
};

/* 'sha256-BASE64' of text, the CSP source that allows that inline element.
 * Returns a malloc'd string or NULL. */
static char *csp_hash(const char *text)
{
	unsigned char digest[32];
	gnutls_datum_t in = { digest, sizeof(digest) }, b64 = { NULL, 0 };
	char *out = NULL;

	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, text, strlen(text), digest) < 0 ||
	    gnutls_base64_encode2(&in, &b64) < 0)
		return NULL;
	if (asprintf(&out, "'sha256-%.*s'", (int)b64.size, (char *)b64.data) < 0)
		out = NULL;
	gnutls_free(b64.data);
	return out;
}

static int page_csp(struct admin_page *p)
{
	char *script = csp_hash(page_script), *style = csp_hash(page_style);
	int rc = -ENOMEM;

	if (script && style &&
	    asprintf(&p->csp, "default-src 'none'; script-src %s; "
		     "style-src %s; connect-src 'self'; img-src data:; "
		     "base-uri 'none'; form-action 'none'; "
		     "frame-ancestors 'none'", script, style) >= 0)
		rc = 0;
	free(script);
	free(style);
	return rc;
}

struct admin_page *admin_page_new(void)
{
	struct admin_page *p = calloc(1, sizeof(*p));
	FILE *out;

	if (!p)
		return NULL;
	out = open_memstream(&p->html, &p->len);
	if (!out)
		goto free_p;
	fputs(page_head, out);
	fputs(page_style, out);
	fputs(page_body, out);
	fputs(page_script, out);
	fputs(page_tail, out);
	if (fclose(out) != 0)
		goto free_html;
	if (page_csp(p) < 0)
		goto free_html;
	return p;
free_html:
	free(p->html);
free_p:
	free(p);
	errno = ENOMEM;
	return NULL;
}

void admin_page_free(struct admin_page *p)
{
	if (!p)
		return;
	free(p->html);
	free(p->csp);
	free(p);
}

const char *admin_page_html(const struct admin_page *p, size_t *len)
{
	*len = p->len;
	return p->html;
}

const char *admin_page_csp(const struct admin_page *p)
{
	return p->csp;
}
