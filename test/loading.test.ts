import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const lib = fileURLToPath(new URL('../lib/index.ts', import.meta.url));

function runChild(code: string, env: Record<string, string | undefined>) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
}

describe('loading the addon', () => {
  it('a missing addon gives one actionable R1VError naming what was tried', () => {
    const result = runChild(
      `import { devices, R1VError } from ${JSON.stringify(lib)};
       try { devices(); } catch (e) { console.log(JSON.stringify({ r1v: e instanceof R1VError, code: e.code, message: e.message })); }`,
      { R1V_ADDON: '/nonexistent/r1v.node' },
    );
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { r1v: boolean; code: string; message: string };
    assert.equal(report.r1v, true);
    assert.equal(report.code, 'IO');
    assert.match(report.message, /\/nonexistent\/r1v\.node \(not found\)/);
    assert.match(report.message, /npm run build:addon/);
  });

  it('a broken addon file is reported with the loader error', () => {
    const result = runChild(
      `import { devices } from ${JSON.stringify(lib)};
       try { devices(); } catch (e) { console.log(e.code + ' ' + e.message.split('\\n')[1]); }`,
      { R1V_ADDON: fileURLToPath(import.meta.url) },
    );
    assert.match(result.stdout, /^IO .*loading\.test\.ts \(/);
  });

  it('loads silently and reports the CPU when no GPU is visible', () => {
    const result = runChild(
      `import { devices } from ${JSON.stringify(lib)};
       const list = devices();
       process.stdout.write(list.map((d) => d.id).join(','));`,
      { CUDA_VISIBLE_DEVICES: '' },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'cpu');
    assert.equal(result.stderr.replace(/npm warn.*\n/g, ''), '');
  });
});
