# pytest --nbval on these notebooks leaves the stderr stream (progress bars, warnings) out of
# the comparison; see paperlib.tools.nbcheck for why.
from paperlib.tools.nbcheck import skip_stderr


def pytest_collection_modifyitems(session, config, items):
    skip_stderr(items)
