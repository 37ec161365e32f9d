from paperlib.study.reproduce import update_times

HEADER = "notebook\tprofile\tminutes\n"


def test_update_times_keeps_one_sorted_row_per_notebook():
    text = update_times("", "02_b.ipynb", "mini", 3.14159)
    assert text == HEADER + "02_b.ipynb\tmini\t3.14\n"
    text = update_times(text, "01_a.ipynb", "mini", 1)
    text = update_times(text, "02_b.ipynb", "smoke", 0.5)  # a rerun replaces its row
    assert text == HEADER + "01_a.ipynb\tmini\t1.00\n02_b.ipynb\tsmoke\t0.50\n"


def test_update_times_reads_the_old_appended_log():
    old = "01_a.ipynb\tmini\t0.13\n04_d.ipynb\tmini\t18.60\n04_d.ipynb\tmini\t20.00\n\n"
    text = update_times(old, "03_c.ipynb", "mini", 2)
    assert text.splitlines() == ["notebook\tprofile\tminutes", "01_a.ipynb\tmini\t0.13",
                                 "03_c.ipynb\tmini\t2.00", "04_d.ipynb\tmini\t20.00"]
