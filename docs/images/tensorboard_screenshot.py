"""How docs/images/tensorboard_across_seeds.png was taken: headless Chromium
driven over the DevTools protocol (the plain `chromium --screenshot` gives the
same page, but it cannot close the settings pane or widen the card).

  python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=1024 \
      --config.train.steps=300 --workdir runs/tb1024
  tensorboard --logdir runs/tb1024 --host 127.0.0.1 --port 6006 &
  pip install websocket-client==1.8.0   # only for this script; apt-get install chromium
  python docs/images/tensorboard_screenshot.py docs/images/tensorboard_across_seeds.png

The URL filters the runs to `across_seeds` and the tags to `^loss/content$`,
draws SVG lines (`forceSVG`, headless Chromium has no WebGL) without
smoothing; the script then turns off "Ignore outliers in chart scaling",
closes the settings pane, puts the card in full-size mode and crops the
empty bottom of the page.
"""

import base64
import json
import subprocess
import sys
import time
import urllib.request

import websocket
from PIL import Image

URL = ('http://127.0.0.1:6006/?runFilter=across_seeds&tagFilter=%5Eloss%2Fcontent%24'
       '&forceSVG=true&smoothing=0#timeseries')
CLICKS = [
    "(() => { const c = Array.from(document.querySelectorAll('mat-checkbox')).find("
    "e => e.innerText.includes('Ignore outliers')); c.querySelector('input').click(); })()",
    "document.querySelector('button[aria-label=\"Close side pane\"]').click()",
    "document.querySelector('button[aria-label=\"Toggle full size mode\"]').click()",
    "(document.querySelector('button[aria-label=\"Deselect fob\"]') || {click() {}}).click()",
]


def main(out):
  browser = subprocess.Popen(['chromium', '--headless', '--no-sandbox', '--remote-debugging-port=9223',
                              '--window-size=1400,900', '--hide-scrollbars', 'about:blank'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    for _ in range(50):
      try:
        tabs = json.load(urllib.request.urlopen('http://127.0.0.1:9223/json'))
        break
      except OSError:
        time.sleep(0.3)
    page = [t for t in tabs if t['type'] == 'page'][0]['webSocketDebuggerUrl']
    ws = websocket.create_connection(page, suppress_origin=True)
    ids = iter(range(1, 1000))

    def call(method, **params):
      i = next(ids)
      ws.send(json.dumps({'id': i, 'method': method, 'params': params}))
      while True:
        m = json.loads(ws.recv())
        if m.get('id') == i:
          return m

    call('Emulation.setDeviceMetricsOverride', width=1400, height=900, deviceScaleFactor=1,
         mobile=False)
    call('Page.navigate', url=URL)
    time.sleep(10)
    for js in CLICKS:
      call('Runtime.evaluate', expression=js)
      time.sleep(3)
    png = base64.b64decode(call('Page.captureScreenshot', format='png')['result']['data'])
  finally:
    browser.kill()
  with open(out, 'wb') as f:
    f.write(png)
  im = Image.open(out).convert('RGB').crop((0, 0, 1400, 665))
  im.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


if __name__ == '__main__':
  main(sys.argv[1])
