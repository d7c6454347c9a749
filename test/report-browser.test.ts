/**
 * The report of a tiny run, opened in a real browser (Debian's chromium through playwright-core, headless,
 * kept off the network) from a file:// URL: no console error, no request leaves the page, every chart has
 * its data points, the galleries their images (decoded), the heat map one row per cluster. It saves a
 * screenshot (ODC_REPORT_SCREENSHOT=PATH, else report.png in a temporary folder, printed).
 * Skipped, with a message, where /usr/bin/chromium (or ODC_CHROMIUM) is absent (.ci/setup-system.sh installs it).
 */
import { before, test } from 'node:test';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assert, setupGpu } from './helpers.ts';
import { syntheticDataset, tinyIdxConfig, writeIdxDataset } from './train-fixtures.ts';
import { train } from '../src/odc/trainer.ts';
import { evaluateRun } from '../src/eval/run-eval.ts';
import { writeReport } from '../src/report/write.ts';

/** Debian's chromium; ODC_CHROMIUM names another binary (or a missing one, to see the skip). */
const CHROMIUM = process.env.ODC_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is not installed (Debian's chromium package; .ci/setup-system.sh installs it): the browser test is skipped`;
if (skip) console.log(`report-browser: ${skip}`);

before(async () => {
  if (!skip) await setupGpu();
});

/** The little of the DOM the page-side function reads (tsconfig carries no DOM library). */
interface PageElement {
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
  textContent: string | null;
  complete?: boolean;
  naturalWidth?: number;
}

interface PageFacts {
  charts: Array<{ title: string; points: number; drawn: number }>;
  galleries: Array<{ size: number; images: number; decoded: number }>;
  heatRows: number;
}

test(
  'the report in Chromium: no console error, no request out, every chart, gallery and heat-map row',
  { skip },
  async () => {
    const { chromium } = await import('playwright-core');
    const root = mkdtempSync(join(tmpdir(), 'odc-report-browser-'));
    const k = 8;
    try {
      const run = join(root, 'run');
      const config = tinyIdxConfig(writeIdxDataset(root, syntheticDataset(96)), 2);
      await train({ config, outDir: run, quiet: true });
      await evaluateRun({ runDir: run, baseline: false, probeEpochs: 2 });
      const dc = join(root, 'deepcluster');
      await train({ config: { ...config, mode: 'deepcluster' }, outDir: dc, quiet: true });
      const report = await writeReport({ runDir: run, compare: [dc] });

      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
        ],
      });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        const errors: string[] = [];
        const outside: string[] = [];
        page.on('console', (m) => {
          if (m.type() === 'error') errors.push(m.text());
        });
        page.on('pageerror', (e) => errors.push(String(e)));
        page.on('request', (r) => {
          if (!/^(file|data):/.test(r.url())) outside.push(r.url());
        });
        const url = pathToFileURL(report).href;
        await page.goto(url, { waitUntil: 'load' });
        const facts = await page.evaluate((): PageFacts => {
          const document = (globalThis as unknown as { document: PageElement }).document;
          const charts = [...document.querySelectorAll('svg.chart')].map((svg) => {
            const title = svg.querySelector('text.title')?.textContent ?? '?';
            const lineCommands = [...svg.querySelectorAll('path.series')].reduce(
              (a, p) => a + ((p.getAttribute('d') ?? '').match(/[ML]/g)?.length ?? 0),
              0,
            );
            const bars = svg.querySelectorAll('rect.bar').length;
            return { title, points: Number(svg.getAttribute('data-points')), drawn: lineCommands + bars };
          });
          const galleries = [...document.querySelectorAll('div.gallery')].map((g) => {
            const images = [...g.querySelectorAll('img')];
            return {
              size: Number(g.getAttribute('data-size')),
              images: images.length,
              decoded: images.filter((i) => i.complete === true && (i.naturalWidth ?? 0) > 0).length,
            };
          });
          return { charts, galleries, heatRows: document.querySelectorAll('svg.heatmap g.heat-row').length };
        });
        const shot = process.env.ODC_REPORT_SCREENSHOT ?? join(root, 'report.png');
        await page.screenshot({ path: shot, fullPage: true });
        if (!process.env.ODC_REPORT_SCREENSHOT)
          console.log(
            `report-browser: screenshot at ${shot} (removed with the temporary folder; set ODC_REPORT_SCREENSHOT to keep one)`,
          );

        assert.deepEqual(errors, [], 'console errors');
        assert.deepEqual(outside, [], 'requests that left the page');
        assert.ok(facts.charts.length >= 10, `${facts.charts.length} charts`);
        for (const c of facts.charts) {
          assert.ok(c.points > 0, `chart "${c.title}" has no data points`);
          assert.equal(c.drawn, c.points, `chart "${c.title}": ${c.drawn} of ${c.points} points drawn`);
        }
        assert.ok(
          facts.charts.some((c) => c.title.startsWith('label stability')),
          'the stability plot',
        );
        assert.ok(facts.galleries.length > 0);
        for (const g of facts.galleries) {
          assert.equal(g.images, Math.min(12, g.size));
          assert.equal(g.decoded, g.images, 'every gallery image decodes');
        }
        assert.equal(facts.heatRows, k);
      } finally {
        await browser.close();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);
