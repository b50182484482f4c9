// Drives the people's console in Debian's headless Chromium (playwright-core pointed at
// the system browser; nothing is downloaded). Run by tests/api/console.rs:
//   node console.mjs <scenario> <base-url> '<json arguments>'
// Each scenario asserts what a person would see, prints one JSON line per milestone on
// stdout, and exits non-zero with the reason when something is wrong.
import { chromium } from "playwright-core";
import axe from "axe-core";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

const [scenario, base, rawArgs] = process.argv.slice(2);
const args = JSON.parse(rawArgs || "{}");
const LAPTOP = { width: 1366, height: 860 };
const PHONE = { width: 390, height: 844 };

const browser = await chromium.launch({
  executablePath: process.env.SENDMUX_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});

function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

async function signIn(page, email, password) {
  await page.goto(base + "/login");
  await page.fill("#email", email);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
  assert.ok(await page.isVisible("nav.sidenav"), "signed in: the workspace navigation shows");
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: LAPTOP, ...options });
  // The suite runs many servers and browsers at once on a small machine.
  context.setDefaultTimeout(60_000);
  context.setDefaultNavigationTimeout(60_000);
  return context.newPage();
}

/** axe-core in the page: serious and critical violations fail the scenario. */
async function accessibility(page, name) {
  await page.evaluate(axe.source);
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) {
    const detail = bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    throw new Error(`accessibility violations on ${name}:\n${detail.join("\n")}`);
  }
  return result.violations.length;
}

async function shoot(page, name) {
  const dir = args.screenshots;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  for (const [label, size] of [["laptop", LAPTOP], ["phone", PHONE]]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: path.join(dir, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(LAPTOP);
}

/** The DNS records table of a domain page, row by row. */
async function readRecords(page) {
  return page.$$eval("table.records tbody tr", (rows) =>
    rows.map((tr) => {
      const cells = tr.querySelectorAll("td");
      return {
        purpose: cells[0].textContent.trim(),
        type: cells[1].textContent.trim(),
        name: cells[2].querySelector("code").textContent.trim(),
        value: cells[3].querySelector("code").textContent.trim(),
        status: cells[4].textContent.trim(),
      };
    }),
  );
}

const scenarios = {
  // Every page of the workspace, as the owner: it renders (200), passes axe at laptop
  // and phone widths, and is photographed at both.
  async tour() {
    const page = await newPage();
    const login = await page.goto(base + "/login");
    assert.equal(login.status(), 200);
    await accessibility(page, "login");
    await shoot(page, "00-sign-in");
    await signIn(page, args.email, args.password);
    let checked = 1;
    for (const [name, url] of args.pages) {
      const res = await page.goto(base + url);
      assert.equal(res.status(), 200, `${url} answers 200`);
      const csp = res.headers()["content-security-policy"] || "";
      assert.match(csp, /script-src 'self'/, `${url} sends the CSP`);
      assert.doesNotMatch(csp, /unsafe-inline'[^;]*script|script-src[^;]*unsafe-inline/, "no inline script allowed");
      assert.equal(await page.locator("h1").count(), 1, `${url} has one heading`);
      await accessibility(page, url);
      await page.setViewportSize(PHONE);
      await accessibility(page, url + " (phone)");
      // Nothing spills sideways on a phone: the page is no wider than the screen.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${url} fits a phone's width (overflows by ${overflow}px)`);
      await page.setViewportSize(LAPTOP);
      await shoot(page, name);
      checked += 1;
    }
    // The moment a key is created: its secret, once, with the copy button.
    await page.goto(base + "/keys");
    await page.click("details.create > summary");
    await page.fill("#key-name", "billing-service");
    await page.check("input[name=kind][value=infrastructure]");
    await Promise.all([page.waitForLoadState("load"), page.click("form[action='/keys'] button[type=submit]")]);
    assert.match((await page.textContent("#new-secret")).trim(), /^smx_inf_/);
    assert.ok(await page.isVisible("button[data-copy=new-secret]"), "the copy button shows with script");
    await accessibility(page, "/keys (created)");
    await shoot(page, "16-key-created");
    say({ pages: checked });
  },

  // A key is created with a plain form (no script at all) and its secret shows once.
  async key_once() {
    const page = await newPage({ javaScriptEnabled: false });
    await signIn(page, args.email, args.password);
    await page.goto(base + "/keys");
    await page.fill("#key-name", "from the console");
    await page.check("input[name=kind][value=infrastructure]");
    await Promise.all([page.waitForLoadState("load"), page.click("form[action='/keys'] button[type=submit]")]);
    const secret = (await page.textContent("#new-secret")).trim();
    assert.match(secret, /^smx_inf_/, "the secret is shown");
    await page.goto(base + "/keys");
    const again = await page.content();
    assert.ok(!again.includes(secret), "the secret is not shown a second time");
    assert.ok(again.includes(secret.slice(-4)), "the list shows its last four characters");
    // Sign out: the session ends, the workspace asks to sign in again.
    await Promise.all([page.waitForURL(/\/login/), page.click("form[action='/logout'] button")]);
    await page.goto(base + "/keys");
    assert.match(page.url(), /\/login\?next=%2Fkeys$/, "signed out: back to the sign-in page");
    say({ secret });
  },

  // A member sees no create controls and no message content.
  async member_view() {
    const page = await newPage();
    await signIn(page, args.email, args.password);
    for (const [url, form] of [["/keys", "/keys"], ["/members", "/members/invite"], ["/mailboxes", "/mailboxes"], ["/webhooks", "/webhooks"], ["/providers", "/providers"]]) {
      await page.goto(base + url);
      assert.equal(await page.locator(`form[action='${form}']`).count(), 0, `no create form on ${url}`);
    }
    assert.equal(await page.locator("text=Revoke").count(), 0, "no revoke buttons");
    await page.goto(base + args.message);
    assert.ok(await page.isVisible("text=Content hidden"), "the message says its content is hidden");
    assert.equal(await page.locator("iframe").count(), 0, "no HTML frame");
    assert.equal(await page.locator("pre.mail-text").count(), 0, "no text body");
    const body = await page.content();
    assert.ok(!body.includes(args.secret_text), "the body's words are nowhere on the page");
    const html = await page.request.get(base + args.message + "/html");
    assert.equal(html.status(), 404, "the HTML route gives the member nothing");
    assert.ok(!(await html.text()).includes(args.secret_text));
    const raw = await page.request.get(base + args.message + "/raw");
    assert.equal(raw.status(), 403, "the raw message is refused");
    say({ ok: true });
  },

  // A developer replays a webhook delivery with its button.
  async replay() {
    const page = await newPage();
    await signIn(page, args.email, args.password);
    await page.goto(base + args.webhook);
    const before = await page.locator("li.delivery").count();
    assert.ok(before >= 1, "the delivery is listed");
    await Promise.all([page.waitForLoadState("load"), page.locator("button.replay").first().click()]);
    await page.waitForSelector(".notice-ok");
    assert.match(await page.textContent(".notice-ok"), /queued again/);
    assert.equal(await page.locator("li.delivery").count(), before + 1, "the replay is a new delivery");
    say({ replayed: true });
  },

  // An admin invites a person, who opens the link, chooses a password and is signed in.
  async invite() {
    const admin = await newPage();
    await signIn(admin, args.email, args.password);
    await admin.goto(base + "/members");
    await admin.fill("#invite-email", args.invitee);
    await admin.selectOption("#invite-role", "developer");
    await Promise.all([admin.waitForLoadState("load"), admin.click("form[action='/members/invite'] button")]);
    const link = (await admin.textContent("#invitation-link")).trim();
    assert.ok(link.startsWith(base + "/invitations/smx_inv_"), `an invitation link: ${link}`);
    await admin.goto(base + "/members");
    assert.ok(!(await admin.content()).includes(link), "the link is shown once");

    const person = await newPage();
    await person.goto(link);
    await person.fill("#password", args.invitee_password);
    await Promise.all([person.waitForURL(base + "/"), person.click("button[type=submit]")]);
    assert.match(await person.textContent(".notice-ok"), /joined the team/);
    assert.equal((await person.textContent(".badge.role")).trim(), "developer");
    // And signs in again later with the password they chose.
    const later = await newPage();
    await signIn(later, args.invitee, args.invitee_password);
    say({ joined: true });
  },

  // HTML mail with a script and a remote image: nothing runs, nothing loads, until the
  // person asks for images (then the image, and only it, loads).
  async hostile_mail() {
    const page = await newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await signIn(page, args.email, args.password);
    await page.goto(base + args.message);
    const frame = page.frameLocator("iframe.mail-frame");
    await frame.locator("#mail-body").waitFor();
    assert.equal(await page.getAttribute("iframe.mail-frame", "sandbox"), "", "the frame is sandboxed without scripts");
    assert.ok(!(await page.title()).includes("pwned"), "the mail's script did not touch the page");
    assert.equal(await frame.locator("#mail-body").getAttribute("data-ran"), null, "the mail's script did not run");
    await page.waitForLoadState("networkidle");
    say({ phase: "loaded" });
    await waitForLine();
    await Promise.all([page.waitForURL(/images=1/), page.click("text=Load remote images")]);
    await frame.locator("#mail-body").waitFor();
    await page.waitForLoadState("networkidle");
    assert.equal(await frame.locator("#mail-body").getAttribute("data-ran"), null, "still no script");
    say({ phase: "images", errors: errors.length });
  },

  // The live feed: an event committed after the page opened appears without a reload;
  // signing out elsewhere ends the stream.
  async live_feed() {
    const page = await newPage();
    await signIn(page, args.email, args.password);
    await page.goto(base + "/events");
    await page.waitForSelector("#live-status.live-on");
    say({ phase: "connected" });
    const id = (await lines.next()).value.trim();
    const item = page.locator("#live-feed li", { hasText: id });
    await item.waitFor();
    assert.match(await item.textContent(), /message\.received/);
    assert.match(await item.textContent(), /from ann@example\.com/);
    say({ phase: "shown", id });
  },

  // An admin adds a domain and reads its DNS records off the page; the test publishes
  // exactly those in its DNS server; Verify now shows it verified record by record; the
  // DKIM key is rotated; Delete is refused while a mailbox is on the domain, then works.
  async domain_admin() {
    const page = await newPage();
    page.on("dialog", (d) => d.accept());
    await signIn(page, args.email, args.password);
    // A new team's first steps start with its domain.
    assert.match(await page.textContent(".getting-started"), /Add your domain/);
    await Promise.all([page.waitForURL(base + "/domains"), page.click(".getting-started a[href='/domains']")]);
    assert.match(await page.textContent(".empty"), /No domains yet/);
    assert.match(await page.textContent(".empty"), /DNS records to publish/);
    await page.fill("#domain-name", args.domain);
    await page.check("input[name=dkim_algorithm][value=ed25519]");
    await Promise.all([page.waitForURL(/\/domains\/dom_/), page.click("form[action='/domains'] button[type=submit]")]);
    assert.match(await page.textContent(".notice-ok"), /added\. Publish its DNS records/);
    assert.match(await page.textContent("main h2"), new RegExp(args.ascii));
    assert.match(await page.textContent("main h2"), new RegExp(args.domain));
    assert.equal((await page.textContent("#domain-status")).trim(), "pending");
    const records = await readRecords(page);
    assert.equal(records.length, 5, "ownership, DKIM, SPF, DMARC, MX");
    assert.ok(records.every((r) => r.status === "pending"), "nothing is verified yet");
    assert.equal(await page.locator("button[data-copy]:visible").count(), 10, "a copy button per name and value");
    say({ phase: "added", url: page.url().slice(base.length), records });

    // The test has published the records the page showed.
    await waitForLine();
    await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Verify now')")]);
    await page.waitForSelector(".notice-ok");
    assert.match(await page.textContent(".notice-ok"), /is verified/);
    assert.equal((await page.textContent("#domain-status")).trim(), "verified");
    const verified = await readRecords(page);
    assert.deepEqual(verified.map((r) => r.status), ["verified", "verified", "verified", "verified", "verified"]);
    await accessibility(page, "domain (verified)");
    await shoot(page, "19-domain-verified");

    await page.check("form[action$='/rotate'] input[value=ed25519]");
    await Promise.all([page.waitForLoadState("load"), page.click("form[action$='/rotate'] button[type=submit]")]);
    await page.waitForSelector(".notice-ok");
    assert.match(await page.textContent(".notice-ok"), /New DKIM key .*the current key signs until it is found/);
    const rotated = await readRecords(page);
    assert.equal(rotated.filter((r) => r.purpose === "dkim").length, 2, "the current and the new DKIM record");
    assert.equal(rotated.find((r) => r.purpose === "dkim" && r.status === "pending") !== undefined, true);
    say({ phase: "rotated" });

    // The test has put a mailbox on the domain: delete is refused with the API's words.
    await waitForLine();
    await Promise.all([page.waitForLoadState("load"), page.click("button:has-text('Delete this domain')")]);
    await page.waitForSelector(".notice-error");
    assert.match(await page.textContent(".notice-error"), /mailbox\(es\) of this team are on .*delete them first/);
    assert.equal((await page.textContent("#domain-status")).trim(), "verified", "still there");
    say({ phase: "refused" });

    // The mailbox is gone: the domain is deleted.
    await waitForLine();
    await Promise.all([page.waitForURL(base + "/domains"), page.click("button:has-text('Delete this domain')")]);
    assert.match(await page.textContent(".notice-ok"), /was deleted/);
    assert.match(await page.textContent(".empty"), /No domains yet/);
    say({ phase: "deleted" });
  },

  // A member reads the domains and their records, with no control to change them; a
  // post the page does not offer is refused by the server.
  async domain_member() {
    const page = await newPage();
    await signIn(page, args.email, args.password);
    await page.goto(base + "/domains");
    assert.ok(await page.isVisible(`a[href='${args.domain}']`), "the domain is listed");
    assert.match(await page.textContent("table"), /pending/);
    assert.equal(await page.locator("form[action='/domains']").count(), 0, "no add form");
    await page.goto(base + args.domain);
    const records = await readRecords(page);
    assert.equal(records.length, 5, "the records are shown");
    assert.ok(records.find((r) => r.purpose === "dkim").value.startsWith("v=DKIM1; k=ed25519; p="));
    for (const action of ["/verify", "/rotate", "/delete"]) {
      assert.equal(await page.locator(`form[action$='${action}']`).count(), 0, `no ${action} form`);
    }
    assert.equal(await page.locator("text=Verify now").count(), 0, "no verify button");
    const csrf = await page.getAttribute("input[name=_csrf]", "value");
    for (const [url, form] of [[args.domain + "/verify", {}], [args.domain + "/delete", {}], ["/domains", { name: "forged.example" }]]) {
      const res = await page.request.post(base + url, { form: { _csrf: csrf, ...form }, maxRedirects: 0 });
      assert.equal(res.status(), 403, `${url} is refused`);
      assert.match(await res.text(), /domains\.manage/, "with the API's permission message");
    }
    say({ refused: 3 });
  },

  // A form posted without its CSRF token (or with a wrong one) is refused.
  async csrf() {
    const page = await newPage();
    await signIn(page, args.email, args.password);
    for (const token of [null, "0".repeat(64)]) {
      await page.goto(base + "/keys");
      await page.fill("#key-name", "forged");
      await page.check("input[name=kind][value=infrastructure]");
      await page.evaluate((t) => {
        const input = document.querySelector("form[action='/keys'] input[name=_csrf]");
        if (t === null) input.remove();
        else input.value = t;
      }, token);
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url() === base + "/keys" && r.request().method() === "POST"),
        page.click("form[action='/keys'] button[type=submit]"),
      ]);
      assert.equal(res.status(), 403, "refused");
      assert.match(await page.textContent("main"), /security token/);
    }
    // The same form with its token goes through.
    await page.goto(base + "/keys");
    await page.fill("#key-name", "genuine");
    await page.check("input[name=kind][value=infrastructure]");
    await Promise.all([page.waitForLoadState("load"), page.click("form[action='/keys'] button[type=submit]")]);
    assert.match((await page.textContent("#new-secret")).trim(), /^smx_inf_/);
    say({ refused: 2 });
  },
};

const stdin = readline.createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function waitForLine() {
  await lines.next();
}

try {
  const run = scenarios[scenario];
  if (!run) throw new Error(`no scenario ${scenario}`);
  await run();
  await browser.close();
  stdin.close();
  process.exit(0);
} catch (e) {
  console.error(e && e.stack ? e.stack : String(e));
  await browser.close().catch(() => {});
  process.exit(1);
}
